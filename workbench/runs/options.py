"""Settings of an analysis: dataclass fields with their default, help text and checks, defined once.

Every analysis declares its settings as a frozen dataclass subclassing
[`Options`][workbench.runs.options.Options], each field made with
[`option`][workbench.runs.options.option]. Everything else is derived from those fields: the
command line (``workbench <analysis> --<field>``, ``workbench run --<analysis>-<field>``), the
validation (choices, lower bounds, then the class's own
[`Options.validate`][workbench.runs.options.Options.validate]), the nested run configuration saved
in the manifest, and the fingerprint that keys checkpoints.

This module imports nothing heavy (no torch), so the command line checks its input at once.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import Field, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.data.batching import LengthPolicy
    from workbench.models.model import Model


class OptionError(WorkbenchError, ValueError):
    """An analysis setting out of range or of the wrong kind."""


def option(
    default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None, each_of: tuple | None = None
) -> Any:
    """A settings field: its default, its help text (shown by ``--help``), and what it accepts.

    Args:
        default: The field's default (a tuple for a many-valued field).
        help: The help text.
        choices: The values a scalar may take.
        minimum: The smallest number allowed (for a tuple, for each item).
        each_of: The values every item of a tuple may take.

    Returns:
        The dataclass field.

    Raises:
        TypeError: The default is a list (options are frozen: use a tuple).
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "each_of": each_of}
    if isinstance(default, list):
        raise TypeError("Use a tuple as the default of a many-valued option (options are frozen).")
    return field(default=default, metadata=meta)


def value_kind(hint: Any) -> tuple[type, bool, bool]:
    """``(item type, many, optional)`` of a field's type hint.

    ``tuple[int, ...]`` is ``(int, True, False)``, ``float | None`` is ``(float, False, True)``.
    """
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


@dataclass(frozen=True)
class Options:
    """Base of every analysis's settings.

    Subclasses add [`option`][workbench.runs.options.option] fields and may override ``validate``
    for checks across fields.

    Attributes:
        ANALYSIS: The analysis these options belong to (also the command line's prefix).
        PRESETS: Preset name -> the field values it sets.
    """

    ANALYSIS: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):
            self._check_field(f)
        self.validate()

    def _check_field(self, f: Field) -> None:
        """Check one field's value(s); freeze lists as tuples and ints as floats where the hint says."""
        value = getattr(self, f.name)
        item, many, optional = value_kind(self.hints()[f.name])
        if optional and value is None:
            return
        values = tuple(self._checked(f, item, v) for v in (value if many else (value,)))
        object.__setattr__(self, f.name, values if many else values[0])  # lists frozen as tuples, ints as floats

    def _checked(self, f: Field, item: type, value: Any) -> Any:
        """One value of a field, of its type, among its choices, above its minimum."""
        if item is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, item) or (item is int and isinstance(value, bool)):
            raise OptionError(f"{self.flag(f.name)} takes {item.__name__} values; got {value!r}.")
        allowed = f.metadata["each_of"] or f.metadata["choices"]
        if allowed is not None and value not in allowed:
            raise OptionError(
                f"{self.flag(f.name)}: unknown value {value!r}; choose from {', '.join(map(str, allowed))}."
            )
        if f.metadata["minimum"] is not None and value < f.metadata["minimum"]:
            raise OptionError(f"{self.flag(f.name)} must be at least {f.metadata['minimum']:g}; got {value!r}.")
        return value

    def validate(self) -> None:
        """Checks across fields.

        Raises:
            OptionError: Fields that do not go together; the message names the flag to change.
        """

    def check_run(self, run: RunOptions) -> None:
        """Checks against the run's settings (e.g. languages among the run's), before the model loads."""

    def needs(self) -> tuple[str, ...]:
        """Analyses these settings need besides the slice's ``requires``.

        They run first, their results are in the store, and their fingerprints are part of this
        one's: e.g. clt-diff of the run's own fine-tune needs finetune.
        """
        return ()

    def check_model(self, model: Model) -> None:
        """Checks against the loaded model, made by the job before any analysis runs.

        E.g. a computation the model's architecture or load route does not support.
        """

    @classmethod
    def hints(cls) -> dict[str, Any]:
        """The fields' type hints, resolved."""
        return typing.get_type_hints(cls)

    @classmethod
    def flag(cls, name: str, prefixed: bool = True) -> str:
        """The command-line flag of a field: ``--plnd-documents`` (``--documents`` unprefixed)."""
        stem = name.replace("_", "-")
        return f"--{cls.ANALYSIS}-{stem}" if prefixed and cls.ANALYSIS else f"--{stem}"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Options from a saved dict.

        Raises:
            OptionError: A key this version does not know, or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OptionError(f"Unknown {cls.ANALYSIS or 'run'} settings {', '.join(unknown)}.")
        return cls(**data)

    def fingerprint(self, *parts: Any) -> str:
        """A short hash of these settings and ``parts`` (other fingerprints, the run's context).

        Checkpoints made with other settings have another fingerprint and are never mixed in.
        """
        text = json.dumps([_FINGERPRINT_LABEL, self.to_dict(), *parts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# Every fingerprint starts with this label (once the class name, which every slice's options
# shared); fixed, so options classes can move or be renamed without orphaning finished parts.
_FINGERPRINT_LABEL = "Options"


def among_run(chosen: Iterable[str], run_languages: list[str], flag: str) -> list[str]:
    """``chosen`` languages of an analysis, each of which must be among the run's.

    The run's languages are those whose documents the aligned samples and PLND cover.

    Raises:
        OptionError: A chosen language is not among the run's; the message names ``flag``.
    """
    outside = [lang for lang in chosen if lang not in run_languages]
    if outside:
        raise OptionError(
            f"{flag} {', '.join(outside)} are not among the run's --languages "
            f"({', '.join(run_languages)}); add them there (PLND needs them)."
        )
    return list(chosen)


DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "ru",
    "zh",
    "ja",
    "ko",
    "ar",
    "hi",
    "sw",
)
"""The languages of the ``paper`` preset."""
DEMO_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "ru", "zh", "sw")
"""The run's languages by default: six languages, five scripts."""
GEMMA_CLT_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "ru", "zh", "ar", "hi")
"""The transcoder study on Gemma: the parallel prompt set's eight languages.

Latin, Cyrillic, Han, Arabic and Devanagari scripts.
"""
WORKSHOP_LANGUAGES: tuple[str, ...] = ("en", "ru", "zh", "ar")
"""A workshop's four languages of the transcoder study."""
LENGTH_POLICIES: tuple[str, ...] = ("truncate", "error")
"""What ``--on-too-long`` accepts (see [`LengthPolicy`][workbench.data.batching.LengthPolicy])."""
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""What ``--dtype`` accepts: torch dtype names."""


@dataclass(frozen=True)
class RunOptions(Options):
    """The run's own settings, shared by every analysis (flags without a prefix)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"languages": DEFAULT_LANGUAGES},
        "gemma-clt": {"languages": GEMMA_CLT_LANGUAGES, "batch_tokens": 2048},
        "gemma-clt-workshop": {"languages": WORKSHOP_LANGUAGES, "batch_tokens": 2048},
    }

    model: str = option("gemma-3-270m", "known model name, local Hugging Face folder, or hub name (online)")
    corpus: str = option("bible", "'bible', a .jsonl file, or hf:NAME:en=CONFIG,... (online)")
    languages: tuple[str, ...] = option(DEMO_LANGUAGES, "comma-separated ISO 639-1 codes")
    translations: tuple[str, ...] = option((), "Bible translation per language, LANG=CODE (see 'workbench corpora')")
    batch_tokens: int = option(512, "padded tokens per forward batch", minimum=1)
    on_too_long: str = option(
        "truncate", "texts longer than the model context: cut with a warning, or stop", choices=LENGTH_POLICIES
    )
    seed: int = option(0, "seed of the document samples and random controls")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    n_devices: int = option(
        1,
        "split the model's layers over this many GPUs from --device on (models larger "
        "than one GPU; on a CPU every layer stays on the CPU)",
        minimum=1,
    )
    dtype: str = option(
        "float32",
        "the model's weights and activations; every sum, statistic and loss is still taken in float32",
        choices=DTYPES,
    )

    @property
    def length_policy(self) -> LengthPolicy:
        """``on_too_long`` as the batching's policy (the option's choices are exactly its values)."""
        return cast("LengthPolicy", self.on_too_long)

    def validate(self) -> None:
        """Lower-case and de-duplicate the languages; refuse none, and translations without ``=``."""
        object.__setattr__(self, "languages", tuple(dict.fromkeys(lang.lower() for lang in self.languages)))
        if not self.languages:
            raise OptionError("--languages is empty; give at least one language code, e.g. en,de.")
        bad = [t for t in self.translations if "=" not in t]
        if bad:
            raise OptionError(f"--translations takes LANG=CODE items (e.g. en=k); got {', '.join(bad)}.")

    def translation_map(self) -> dict[str, str]:
        """The Bible translations asked for: language -> translation code or name."""
        return dict(item.split("=", 1) for item in self.translations)

    def context(self) -> dict[str, Any]:
        """What decides every analysis's numbers (not where or on which devices it runs)."""
        data = self.to_dict()
        data.pop("device")
        data.pop("n_devices")
        if data["dtype"] == "float32":  # the precision every run had before --dtype: its fingerprints stay
            data.pop("dtype")
        return data
