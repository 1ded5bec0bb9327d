"""One language's PLND importances summarised over its documents, and saved (docs/methods.md §5).

PLND keeps no per-document arrays: per language, only what
[`ImportanceSummary`][workbench.neurons.plnd_summary.ImportanceSummary] holds: the sum, minimum and
worst rank of every neuron's importance over documents, and how many documents activated it,
overall and in two disjoint halves of the documents (even and odd positions), which measure how
stable the sets are when the sample changes. The minimum and worst rank let the "every document"
sets be re-selected for any threshold or k without rerunning the model. LAPE's activation counts
([`workbench.neurons.lape`][workbench.neurons.lape]) ride along.

A summary is saved as safetensors (arrays compacted, the rest as metadata): the run's store keeps
one per language, so a resumed run never recomputes a finished language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.numpy import load_file, save

from workbench.neurons.sets import check_structures
from workbench.runs.results import atomic_write_bytes


@dataclass
class ImportanceSummary:
    """One language's importances summarised over its documents.

    Attributes:
        language: The language.
        ids: Its documents' ids, in order.
        n_tokens: The tokens counted.
        total: Per structure, each neuron's importance summed over documents.
        minimum: Per structure, each neuron's least importance over documents.
        worst_rank: Per structure, each neuron's highest rank over documents (0 = most important).
        count_halves: Per structure, the documents activating each neuron, in the even and the odd
            halves of the documents.
        positive: Tokens on which each FFN neuron's activation is positive (LAPE; None unless
            counted).
        settings: How the summary was made: selection, structures, ``lape``, ``include_bos``.
    """

    language: str
    ids: list[str]
    n_tokens: int
    total: dict[str, Float[np.ndarray, "layer neuron"]]
    minimum: dict[str, Float[np.ndarray, "layer neuron"]]
    worst_rank: dict[str, Int[np.ndarray, "layer neuron"]]
    count_halves: dict[str, Int[np.ndarray, "2 layer neuron"]]
    positive: Float[np.ndarray, "layer d_mlp"] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_documents(self) -> int:
        """The documents summarised."""
        return len(self.ids)

    @property
    def count(self) -> dict[str, Int[np.ndarray, "layer neuron"]]:
        """Documents activating each neuron (under the selection the summary was made with)."""
        return {s: h.sum(0, dtype=np.int64) for s, h in self.count_halves.items()}

    def mean(self, structure: str) -> Float[np.ndarray, "layer neuron"]:
        """Each neuron's mean importance over documents."""
        return self.total[structure] / max(1, self.n_documents)

    def half_sizes(self) -> tuple[int, int]:
        """Documents in the even and the odd half."""
        return (self.n_documents + 1) // 2, self.n_documents // 2

    def save(self, path: Path) -> None:
        """Write the summary as safetensors (arrays compacted, the rest as metadata)."""
        arrays = {}
        for name in ("total", "minimum", "worst_rank", "count_halves"):
            for s, a in getattr(self, name).items():
                arrays[f"{name}.{s}"] = _compact(a)
        if self.positive is not None:
            arrays["positive"] = _compact(self.positive)
        meta = {
            "language": self.language,
            "ids": "\n".join(self.ids),
            "n_tokens": str(self.n_tokens),
            "settings": json.dumps(self.settings),
        }
        atomic_write_bytes(Path(path), save(arrays, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> ImportanceSummary:
        """The summary [`save`][workbench.neurons.plnd_summary.ImportanceSummary.save] wrote."""
        with safe_open(str(path), "np") as fh:
            meta = fh.metadata()
        arrays = load_file(str(path))
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key in sorted(k for k in arrays if "." in k):
            name, s = key.split(".", 1)
            groups.setdefault(name, {})[s] = arrays[key]
        groups = {name: {s: g[s] for s in check_structures(g)} for name, g in groups.items()}
        return cls(
            language=meta["language"],
            ids=meta["ids"].split("\n") if meta["ids"] else [],
            n_tokens=int(meta["n_tokens"]),
            positive=arrays.get("positive"),
            settings=json.loads(meta.get("settings", "{}")),
            **groups,
        )


def _compact(a: np.ndarray) -> np.ndarray:
    """Floats as float32, counts and ranks as int16 where they fit: summaries stay small."""
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(a, dtype=np.float32)
    fits = a.size == 0 or (a.min() >= -(2**15) and a.max() < 2**15)
    return np.ascontiguousarray(a, dtype=np.int16 if fits else np.int32)


__all__ = ["ImportanceSummary"]
