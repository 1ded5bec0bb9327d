"""The slice registry: which analyses a run can do, in run order, and how to load one.

A slice is a package exporting ``Options``, ``requires``, ``run``, ``Result``, ``figures`` and
``section`` ([`workbench.analyses`][workbench.analyses] describes the protocol). The run machinery (the job, the
store, the report) reaches analyses only through this registry and never imports one: the layer
below cannot know the layer above. [`workbench.analyses`][workbench.analyses] registers its table here when it is
imported, and the package root imports it, so the table is filled before anything asks.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

from workbench.errors import WorkbenchError

_TABLE: dict[str, str] = {}  # analysis name -> slice package, in run order


def register(table: dict[str, str]) -> None:
    """Add analyses (name -> importable slice package), in run order: after those they require."""
    _TABLE.update(table)


def names() -> list[str]:
    """Every registered analysis, in run order."""
    return list(_TABLE)


def load_slice(name: str) -> ModuleType:
    """The slice package of an analysis (light: its options; the rest loads on first use)."""
    if name not in _TABLE:
        raise WorkbenchError(f"Unknown analysis {name!r}; choose from {', '.join(_TABLE)}.")
    return importlib.import_module(_TABLE[name])


def with_requirements(wanted: Iterable[str]) -> list[str]:
    """``wanted`` and everything they require, in run order."""
    chosen: set[str] = set()

    def add(name: str) -> None:
        if name not in chosen:
            chosen.add(name)
            for need in load_slice(name).requires:
                add(need)

    for name in wanted:
        add(name)
    return [name for name in _TABLE if name in chosen]
