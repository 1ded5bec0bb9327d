"""The result of the probe slice: held-out accuracy per residual point, against the baselines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from workbench.lens.probe import PointScore
from workbench.runs.results import Result as Base


@dataclass
class Result(Base):
    """Held-out accuracy per residual point, the baselines, and the settings."""

    JSON = "probe.json"

    languages: list[str]
    n_layers: int
    scores: list[PointScore]
    baselines: dict[str, float]
    tokens: dict[str, int]  # training and held-out tokens (all languages)
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per residual point: accuracy on all tokens, on shared tokens, and per language."""
        return [
            {
                "point": s.point,
                "accuracy": s.accuracy,
                "shared tokens": s.shared,
                **{lang: s.per_language[i] for i, lang in enumerate(self.languages)},
            }
            for s in self.scores
        ]

    def readable_from(self, threshold: float) -> int | None:
        """The first residual point whose probe reaches ``threshold`` on shared tokens (None: none does)."""
        return next((s.point for s in self.scores if not math.isnan(s.shared) and s.shared >= threshold), None)
