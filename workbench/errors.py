"""Errors the workbench raises for bad input. Each message says what to do instead.

The command line prints these without a traceback; anything else is a bug.
"""


class WorkbenchError(Exception):
    """Base class: a user-facing problem with a fix named in the message."""


class UnknownModelError(WorkbenchError, ValueError):
    """A model spec that is neither a known name, a local folder, nor a hub name."""


class OfflineError(WorkbenchError, RuntimeError):
    """Something needs the Hugging Face hub and the hub cannot be reached."""


class UnsupportedArchitectureError(WorkbenchError, ValueError):
    """A model whose architecture neither HookedTransformer nor TransformerBridge can load."""


class UnknownLanguageError(WorkbenchError, ValueError):
    """A language the corpus does not have."""


class EmptyCorpusError(WorkbenchError, ValueError):
    """A corpus, split or selection with no usable documents."""


class CorpusFormatError(WorkbenchError, ValueError):
    """A corpus file that cannot be read: a line that is not JSON, or a record missing a field."""


class TextTooLongError(WorkbenchError, ValueError):
    """A text longer than the model's context, under the 'error' length policy."""


class ResultsMismatchError(WorkbenchError, RuntimeError):
    """An output folder that holds results made with other settings."""


class MissingResultError(WorkbenchError, FileNotFoundError):
    """A results folder without the result an analysis or the report needs."""
