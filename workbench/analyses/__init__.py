"""The analyses, one slice each, and the registry the job, the command line and the report loop over.

A slice is a small package ``workbench.analyses.<name>`` that exports:

* ``Options``: a frozen dataclass of its settings ([`workbench.runs.options`][workbench.runs.options]),
  defaults and help text defined once; the command line is generated from it;
* ``requires``: the analyses whose results it needs (run first, their results in the store);
* ``run(model, corpus, options, store) -> Result``: sampling, tokenisation, compute, saving;
* ``Result``: its result (save/load through [`workbench.runs.results.Result`][workbench.runs.results.Result],
  ``table()``);
* ``figures(result)`` and ``section(result)``: its plotly figures and its report section, with a
  verdict computed from the numbers.

The package itself imports only its options (no torch), so the command line starts at once;
``run``, ``Result``, ``figures`` and ``section`` load on first use. Adding an analysis is its
package plus one line in ``REGISTRY`` (below), which is registered with
[`workbench.runs.slices`][workbench.runs.slices] (where the job, the store and the report find slices
without importing this layer). A name ``group-action`` (``clt-train``) is also the command
``workbench group action`` (``workbench clt train``).

No analysis imports another: what two of them share lives in the domain package below (the
transcoder's analyses share [`workbench.clt`][workbench.clt]'s modules).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from workbench.runs.slices import load_slice, register, with_requirements

REGISTRY: dict[str, str] = {
    "loss": "workbench.analyses.loss",
    "lens": "workbench.analyses.lens",
    "probe": "workbench.analyses.probe",
    "plnd": "workbench.analyses.plnd",
    "ablate": "workbench.analyses.ablate",
    "finetune": "workbench.analyses.finetune",
    "ffn": "workbench.analyses.ffn",
    "clt-train": "workbench.analyses.clt_train",
    "clt-features": "workbench.analyses.clt_features",
    "clt-steer": "workbench.analyses.clt_steer",
    "clt-graph": "workbench.analyses.clt_graph",
    "clt-diff": "workbench.analyses.clt_diff",
    "clt-study": "workbench.analyses.clt_study",
}
"""Every analysis by name, in run order (an analysis comes after those it requires), with its slice package."""
ALIASES: dict[str, str] = {"graph": "clt-graph", "diff": "clt-diff"}
"""Commands that are also a group's action: ``workbench graph`` is ``workbench clt graph``."""
DEFAULT_ANALYSES: tuple[str, ...] = ("loss", "lens", "plnd", "ablate")
"""What ``workbench run`` does without ``--analyses``."""

register(REGISTRY)

__all__ = ["ALIASES", "DEFAULT_ANALYSES", "REGISTRY", "lazy_exports", "load_slice", "with_requirements"]


def lazy_exports(package: str, module: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names`` from ``package.module`` on first use.

    A slice's package stays light (no torch) until its heavy part is needed.
    """

    def __getattr__(attribute: str) -> Any:
        if attribute in names:
            return getattr(importlib.import_module(f"{package}.{module}"), attribute)
        raise AttributeError(f"module {package!r} has no attribute {attribute!r}")

    return __getattr__
