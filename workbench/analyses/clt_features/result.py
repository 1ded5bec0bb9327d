"""The result of the clt-features slice: the transcoder's features by kind, per layer and language."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.clt.features.cards import FeatureCard
from workbench.runs.results import Result as Base


@dataclass
class Result(Base):
    """Features per layer by kind, the identity features of every language, cards, PLND agreement."""

    JSON = "clt-features.json"

    languages: list[str]
    n_layers: int
    n_features: int
    tokens: dict[str, int]
    layer_counts: list[dict]
    identity: dict[str, list[FeatureCard]]
    multilingual: list[FeatureCard]
    share_bins: list[list[int]]  # per layer, used features by their top language's share (10 bins up to 1)
    plnd: dict = field(default_factory=dict)  # cells (language, layer, plnd, clt) and their Spearman
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """Per layer: specific features per language, multilingual, rare and the rest."""
        return self.layer_counts

    def identity_table(self) -> list[dict]:
        """One row per identity feature: its language, score, frequency per language and mean where active."""
        return [
            {
                "language": lang,
                "feature": c.name(),
                "score": c.score,
                **{f"freq {k}": v for k, v in c.frequency.items()},
                "mean where active": c.active_mean[lang],
            }
            for lang, cards in self.identity.items()
            for c in cards
        ]

    def card_rows(self) -> list[dict]:
        """One row per card and language it is active in: the feature, its frequency and its top contexts."""
        cards = [c for cards in self.identity.values() for c in cards if c.contexts] + self.multilingual
        return [
            {
                "feature": c.name(),
                "kind": c.kind,
                "language": lang,
                "frequency": c.frequency[lang],
                "top contexts ([token] active)": " | ".join(x.text.replace("\n", " ") for x in ctx),
            }
            for c in cards
            for lang, ctx in c.contexts.items()
        ]
