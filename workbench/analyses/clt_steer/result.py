"""The result of the clt-steer slice: every cell of the steering sweep."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from workbench.clt.steering.identity import SteerRow, best_per_pair
from workbench.runs.results import Result as Base


@dataclass
class Result(Base):
    """Every cell of the sweep, and the settings."""

    JSON = "clt-steer.json"

    rows: list[SteerRow]
    prompts: dict[str, int]  # source -> prompts used
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per cell of the sweep."""
        return [asdict(row) for row in self.rows]

    def mean(self, key: str, kind: str, strength: float) -> float:
        """Mean of ``key`` (e.g. ``share_target``) over the pairs at one strength and kind.

        Cells with no labelled token are left out (NaN where every cell has none).
        """
        kept = [
            v for r in self.rows if r.kind == kind and r.strength == strength and not math.isnan(v := getattr(r, key))
        ]
        return float(np.mean(kept)) if kept else float("nan")

    def best(self) -> list[dict]:
        """Per pair, the strength that steers best: [`best_per_pair`][workbench.clt.steering.identity.best_per_pair]."""
        return best_per_pair(self.rows)
