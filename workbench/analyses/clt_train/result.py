"""The result of the clt-train slice: the transcoder's shape, how it was made, and its quality."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.clt.quality import LayerQuality
from workbench.clt.runs.measures import Replacement
from workbench.clt.runs.transcoder import Splice, Training
from workbench.runs.results import Result as Base


@dataclass
class Result(Base):
    """The transcoder's shape, how it was made, and its quality per language and layer."""

    JSON = "clt-train.json"

    config: dict
    source: str  # "trained", or the folder(s) it was loaded from
    transcoder: str  # the folder holding it, relative to the results folder ("" without one)
    quality: dict[str, list[LayerQuality]]  # language -> per layer, on held-out verses
    loss: dict[str, Replacement]
    training: Training | None = None
    settings: dict = field(default_factory=dict)
    splice: Splice | None = None  # the spliced fine-tune, where the run made one (quality and loss are after it)

    def table(self) -> list[dict]:
        """One row per language and layer: FVU, L0 and dead share."""
        return [
            {"language": lang, "layer": q.layer, "fvu": q.fvu, "l0": q.l0, "dead": q.dead}
            for lang, rows in self.quality.items()
            for q in rows
        ]

    def worst(self) -> list[LayerQuality]:
        """Per covered layer, the worst FVU and L0 over languages (the goal must hold in every one)."""
        columns = list(zip(*self.quality.values()))  # per layer: that layer's row in every language
        return [
            LayerQuality(rows[0].layer, max(q.fvu for q in rows), max(q.l0 for q in rows), min(q.dead for q in rows))
            for rows in columns
        ]
