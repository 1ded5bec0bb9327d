"""Flags from options, and options back from the parsed flags.

One flag per ``Options`` field: its default, help and checks are defined once, there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import TypeVar

from workbench.analyses import REGISTRY, load_slice, with_requirements
from workbench.errors import WorkbenchError
from workbench.runs.options import OptionError, Options, RunOptions, value_kind

_OptionsT = TypeVar("_OptionsT", bound=Options)


def presets() -> list[str]:
    """The presets any Options class defines (``paper``)."""
    classes = [RunOptions, *(load_slice(name).Options for name in REGISTRY)]
    return sorted({name for cls in classes for name in cls.PRESETS})


def split_list(text: str) -> list[str]:
    """The items of a comma list, stripped, empty ones and repeats dropped."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return list(dict.fromkeys(items))


def _parser_of(item: type, flag: str, many: bool, optional: bool) -> Callable[[str], object]:
    """An argparse ``type``: one value of ``item`` (or 'auto' for None), or a comma list."""

    def one(text: str) -> object:
        if optional and text == "auto":
            return None
        try:
            return item(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes {item.__name__} values; got {text!r}") from None

    if not many:
        return one
    return lambda text: tuple(one(part) for part in split_list(text))


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "auto" if value is None else str(value)


def add_options(
    parser: argparse.ArgumentParser, cls: type[Options], short: bool = False, only: tuple[str, ...] = ()
) -> None:
    """One flag per field of ``cls`` (or of those in ``only``), in an argument group named for the analysis.

    Flags carry the analysis's prefix (``--plnd-documents``, as error messages name them); with
    ``short``, a field also answers to its bare name (``--documents``) unless a run flag has that
    name. Nothing given keeps the field's default, so defaults stay in the ``Options`` class.
    """
    hints = cls.hints()
    run_flags = {RunOptions.flag(f.name) for f in fields(RunOptions)}
    group = parser.add_argument_group(f"{getattr(cls, 'TITLE', '') or cls.ANALYSIS or 'run'} options")
    for f in fields(cls):
        if only and f.name not in only:
            continue
        item, many, optional = value_kind(hints[f.name])
        flags = [cls.flag(f.name)]
        if short and cls.flag(f.name, prefixed=False) not in run_flags:
            flags.insert(0, cls.flag(f.name, prefixed=False))
        meta = f.metadata
        default = "" if f.default is MISSING else f" (default: {_shown(f.default)})"
        dest, text = f"{cls.ANALYSIS or 'run'}.{f.name}", meta["help"] + default
        if item is bool:
            group.add_argument(
                *flags, action=argparse.BooleanOptionalAction, dest=dest, default=argparse.SUPPRESS, help=text
            )
            continue
        choices = meta["each_of"] if many else meta["choices"]
        metavar = (
            ("{" + ",".join(map(str, choices)) + "}" + (",..." if many else ""))
            if choices
            else (f"{item.__name__.upper()}{',...' if many else ''}")
        )
        group.add_argument(
            *flags,
            type=_parser_of(item, flags[-1], many, optional),
            metavar=metavar,
            dest=dest,
            default=argparse.SUPPRESS,
            help=text,
        )


def options_from(args: argparse.Namespace, cls: type[_OptionsT], preset: str | None) -> _OptionsT:
    """``cls`` from the flags given, over the preset's values, over the defaults."""
    prefix = f"{cls.ANALYSIS or 'run'}."
    given = {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}
    base = cls.PRESETS.get(preset, {}) if preset else {}
    return cls(**{**base, **given})


def _given_analyses(args: argparse.Namespace) -> set[str]:
    return {k.split(".", 1)[0] for k in vars(args) if "." in k} - {"run"}


def analyses_from(args: argparse.Namespace, names: list[str], preset: str | None) -> dict[str, Options]:
    """The options of ``names`` and the analyses they require, from the flags given.

    Options of an analysis that is not among them are refused rather than ignored.
    """
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise WorkbenchError(f"Unknown analysis {', '.join(unknown)}; choose from {', '.join(REGISTRY)}.")
    chosen: dict[str, Options] = {}
    while True:  # what the analyses require, and what their settings need (e.g. clt-diff of the run's finetune)
        names = with_requirements([*names, *(need for options in chosen.values() for need in options.needs())])
        if set(names) == set(chosen):
            break
        chosen = {name: chosen.get(name) or options_from(args, load_slice(name).Options, preset) for name in names}
    stray = sorted(_given_analyses(args) - set(names))
    if stray:
        raise OptionError(
            f"Options of {', '.join(stray)} were given, but it is not among the analyses "
            f"({', '.join(names)}); add it to --analyses or drop those options."
        )
    return {name: chosen[name] for name in names}
