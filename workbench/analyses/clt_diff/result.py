"""The result of the clt-diff slice: what fine-tuning changed, seen through the base model's transcoder."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.clt.features.diff import FeatureChange
from workbench.clt.features.stats import Context
from workbench.clt.graphs.summary import GraphRow
from workbench.runs.results import Result as Base


@dataclass
class ChangeCard:
    """A feature that changed most, with its top contexts per language (on the base model)."""

    change: FeatureChange
    contexts: dict[str, list[Context]] = field(default_factory=dict)


@dataclass
class Result(Base):
    """What changed, by layer, language and feature, and the graph before and after."""

    JSON = "clt-diff.json"

    tuned: str
    languages: list[str]
    n_layers: int
    layers: list[dict]
    fvu: dict[str, list[list[float]]]  # language -> per layer (base, fine-tuned)
    identity: list[dict]
    changed: list[ChangeCard]
    graphs: list[GraphRow] = field(default_factory=list)  # the prompt's graph: base, then fine-tuned
    graph_overlap: list[float] = field(default_factory=list)  # per layer, Jaccard of their kept features
    views: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    target: str = ""  # the fine-tuned language, where the tuned model is a finetune delta
    strength: list[dict] = field(default_factory=list)  # per layer and language: its specific features, before/after

    def strength_change(self, language: str, what: str = "frequency") -> dict[int, float]:
        """Per layer, the change (fine-tuned minus base) of ``language``'s specific features on its own tokens.

        ``what``: their mean ``frequency`` or ``mean`` activation.
        """
        return {
            r["layer"]: r[f"{what} fine-tuned"] - r[f"{what} base"] for r in self.strength if r["language"] == language
        }

    def table(self) -> list[dict]:
        """Per layer: how far the features' frequencies moved, and how many moved."""
        return self.layers

    def changed_table(self) -> list[dict]:
        """One row per most-changed feature: its change, its frequency per language, its top contexts."""
        return [
            {
                "feature": c.change.name(),
                "largest change of mean activation": c.change.change,
                **{f"freq {lang}": f"{b:.3f} -> {t:.3f}" for lang, (b, t) in c.change.frequency.items()},
                "top contexts (base)": " | ".join(
                    x.text.replace("\n", " ") for ctx in list(c.contexts.values())[:1] for x in ctx
                ),
            }
            for c in self.changed
        ]
