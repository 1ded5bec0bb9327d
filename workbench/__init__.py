"""Multilingual workbench: hook-based analyses of how language models handle many languages.

The package is a thin layer over TransformerLens. Every analysis is a set of hook functions on a
``HookedTransformer``; results are plain data classes that save and load themselves.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("multilingual-workbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
