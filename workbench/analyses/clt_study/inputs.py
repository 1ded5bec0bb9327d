"""What the clt-study slice reads of the other slices' results: their shapes, not the slices themselves.

The study summarises the results of ``clt-train``, ``clt-features``, ``clt-steer`` and ``clt-graph``
(and of ``probe`` and ``clt-diff`` where the run has them); it imports none of those analyses, so
each is described here by the fields and methods the study reads.
"""

from __future__ import annotations

from typing import Protocol

from workbench.clt.features.cards import FeatureCard
from workbench.clt.graphs.summary import GraphRow
from workbench.clt.quality import LayerQuality
from workbench.clt.runs.measures import Replacement
from workbench.lens.probe import PointScore


class TrainResult(Protocol):
    """The transcoder's config, the replacement model's loss per language, and the worst quality per layer."""

    config: dict
    loss: dict[str, Replacement]

    def worst(self) -> list[LayerQuality]:
        """Per covered layer, the worst FVU and L0 over languages."""
        ...


class FeaturesResult(Protocol):
    """The languages, the feature kinds per layer, and each language's identity features."""

    languages: list[str]
    layer_counts: list[dict]
    identity: dict[str, list[FeatureCard]]


class SteerResult(Protocol):
    """The steering sweep, summarised per language pair."""

    def best(self) -> list[dict]:
        """Per pair, the strength that steers best and whether the pair is steered."""
        ...


class GraphResult(Protocol):
    """Every graph's summary and the overlap of kept features across languages per layer."""

    n_layers: int
    rows: list[GraphRow]
    jaccard: dict[str, list[float]]


class ProbeResult(Protocol):
    """The language probe's held-out accuracy per residual point, and its baselines."""

    scores: list[PointScore]
    baselines: dict[str, float]
    settings: dict

    def readable_from(self, threshold: float) -> int | None:
        """The first residual point whose probe reaches ``threshold`` on shared tokens."""
        ...


class DiffResult(Protocol):
    """The fine-tuned language, and each language's specific features' change per layer."""

    target: str
    languages: list[str]

    def strength_change(self, language: str, what: str = "frequency") -> dict[int, float]:
        """Per layer, the change of ``language``'s specific features on its own tokens."""
        ...
