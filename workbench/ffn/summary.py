"""One language's FFN summary: the running sums of both sublayers, and how they are saved.

A [`SublayerSums`][workbench.ffn.summary.SublayerSums] holds what a stream of rows leaves behind
(rows seen, near-zero counts and summed values per unit, summed row entropy), enough to give the
metrics of [`workbench.ffn.metrics`][workbench.ffn.metrics] exactly. An
[`FFNSummary`][workbench.ffn.summary.FFNSummary] holds both sublayers' sums for one language on
one set of documents, with the settings they were made with and, optionally, each document's mean
vector per layer; it saves as safetensors, so a run keeps each language's part at once and reuses
it on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.numpy import save

from workbench.runs.distributed import all_reduce
from workbench.runs.results import atomic_write_bytes

SUBLAYERS: tuple[str, ...] = ("detector", "combinator")
"""The FFN's two sublayers: its hidden activations and its output."""


@dataclass
class SublayerSums:
    """Running sums over rows for every layer of one sublayer.

    Attributes:
        rows: The rows added.
        near_zero: Per layer, the rows where each unit is near zero.
        total: Per layer, each unit's summed activation.
        entropy: Per layer, the summed row entropy.
    """

    rows: int
    near_zero: Int[np.ndarray, "layer unit"]
    total: Float[np.ndarray, "layer unit"]
    entropy: Float[np.ndarray, " layer"]

    @classmethod
    def empty(cls, n_layers: int, units: int) -> SublayerSums:
        """Sums of no rows."""
        return cls(0, np.zeros((n_layers, units), np.int64), np.zeros((n_layers, units)), np.zeros(n_layers))

    def sparsity(self) -> Float[np.ndarray, " layer"]:
        """Share of near-zero entries."""
        return self.near_zero.sum(1) / max(self.rows * self.near_zero.shape[1], 1)

    def frequency(self) -> Float[np.ndarray, "layer unit"]:
        """Share of rows where each unit is active."""
        return 1.0 - self.near_zero / max(self.rows, 1)

    def flatness(self) -> Float[np.ndarray, " layer"]:
        """Mean row entropy (nats)."""
        return self.entropy / max(self.rows, 1)

    def mean(self) -> Float[np.ndarray, "layer unit"]:
        """Mean activation per unit (ranks equal those of the summed one)."""
        return self.total / max(self.rows, 1)

    def merge(self) -> None:
        """Add the other processes' sums under ``torchrun``, in place.

        See [`workbench.runs.distributed`][workbench.runs.distributed]; nothing to do in a world of one.
        """
        for array in (self.near_zero, self.total, self.entropy):
            all_reduce(torch.from_numpy(array), "sum")  # shares the array's memory
        self.rows = int(all_reduce(torch.tensor([self.rows]), "sum")[0])


@dataclass
class FFNSummary:
    """One language on one set of documents: the sums of both sublayers, and each document's mean vector.

    Attributes:
        language: The language.
        ids: The documents' ids, in order.
        positions: Which positions counted as rows.
        tolerance: ``|activation|`` at or below this counted as zero.
        include_bos: Whether the BOS position counted.
        sums: Per sublayer, its sums.
        pooled: Per sublayer, each document's mean vector per layer, in document order (empty
            unless collected).
    """

    language: str
    ids: list[str]
    positions: str
    tolerance: float
    include_bos: bool
    sums: dict[str, SublayerSums]
    pooled: dict[str, Float[np.ndarray, "document layer unit"]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the summary as safetensors (the settings and row counts as metadata)."""
        arrays = {}
        for name, s in self.sums.items():
            arrays.update({f"{name}.near_zero": s.near_zero, f"{name}.total": s.total, f"{name}.entropy": s.entropy})
        arrays.update({f"{name}.pooled": v.astype(np.float32) for name, v in self.pooled.items()})
        meta = {
            "language": self.language,
            "ids": "\n".join(self.ids),
            "positions": self.positions,
            "tolerance": repr(self.tolerance),
            "include_bos": str(self.include_bos),
            "rows": ",".join(f"{k}={s.rows}" for k, s in self.sums.items()),
        }
        atomic_write_bytes(Path(path), save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> FFNSummary:
        """The summary [`save`][workbench.ffn.summary.FFNSummary.save] wrote."""
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata()
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
        rows = dict(item.split("=") for item in meta["rows"].split(","))
        sums = {
            name: SublayerSums(
                int(rows[name]), arrays[f"{name}.near_zero"], arrays[f"{name}.total"], arrays[f"{name}.entropy"]
            )
            for name in SUBLAYERS
        }
        pooled = {name: arrays[f"{name}.pooled"] for name in SUBLAYERS if f"{name}.pooled" in arrays}
        return cls(
            meta["language"],
            meta["ids"].split("\n") if meta["ids"] else [],
            meta["positions"],
            float(meta["tolerance"]),
            meta["include_bos"] == "True",
            sums,
            pooled,
        )
