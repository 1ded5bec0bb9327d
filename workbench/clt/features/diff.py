"""Model diffing through a base model's transcoder (arXiv 2511.10840, "model diffing").

The base model's transcoder is applied, unchanged, to the base model and to a fine-tuned version
of it (a neuron-fine-tuning delta, or a model fine-tuned on one language): the features are the
base model's, so what changes is how the fine-tuned model uses them. Per language, on the same
held-out verses:

* per feature: the change in activation frequency (share of tokens active), in magnitude (mean
  activation where active) and in mean activation per token (both together, what ranks features);
* per layer: the change in reconstruction error (FVU, a skip transcoder's skip included) — features
  that no longer fit the fine-tuned model's MLPs show up as error;
* per language: the change in its identity features' strength (their identity score, frequency in
  the language minus the highest frequency in any other;
  [`workbench.clt.features.stats`][workbench.clt.features.stats]), and per layer the change of its
  specific features on its own tokens (what a fine-tune of one language's neurons should raise).

A model diffed against itself changes nothing (``tests/clt/test_clt_diff.py``), and a fine-tune that
writes one known direction shows up first in the feature that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Int

from workbench.clt.features.stats import FeatureStats, LanguageFeatures, feature_stats
from workbench.clt.quality import LayerQuality, layer_quality
from workbench.clt.transcoder import CrossLayerTranscoder

if TYPE_CHECKING:
    from workbench.models.model import Model


@dataclass
class Side:
    """One model seen through the transcoder, per language: feature statistics and layer quality.

    Attributes:
        stats: Language -> its feature statistics.
        quality: Language -> its quality per covered layer.
    """

    stats: dict[str, FeatureStats]
    quality: dict[str, list[LayerQuality]]


def measure(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: dict[str, list[Int[torch.Tensor, " pos"]]],
    batch_tokens: int = 2048,
) -> Side:
    """Feature statistics and FVU per layer of ``model`` on each language's ``documents`` (token lists, BOS first)."""
    return Side(
        {lang: feature_stats(model, clt, docs, batch_tokens) for lang, docs in documents.items()},
        {lang: layer_quality(model, clt, docs, batch_tokens) for lang, docs in documents.items()},
    )


@dataclass
class FeatureChange:
    """One feature's change, per language: frequency, magnitude where active, mean per token.

    Attributes:
        layer: The feature's layer.
        feature: Its index.
        frequency: Language -> (base, fine-tuned) share of tokens on which it is active.
        active_mean: Language -> (base, fine-tuned) mean activation where active.
        change: The largest ``|change of mean activation per token|`` over languages.
    """

    layer: int
    feature: int
    frequency: dict[str, tuple[float, float]]
    active_mean: dict[str, tuple[float, float]]
    change: float

    def name(self) -> str:
        """``L{layer}/{feature}``."""
        return f"L{self.layer}/{self.feature}"


@dataclass
class Diff:
    """The base and fine-tuned sides and what differs between them.

    Attributes:
        base: The base model through its transcoder.
        tuned: The fine-tuned model through the same transcoder.
        min_frequency: The frequency from which a feature counts as used by a language.
        specific_share: The share of a feature's use from which it is specific to a language.
    """

    base: Side
    tuned: Side
    min_frequency: float = 0.01
    specific_share: float = 0.8

    @property
    def languages(self) -> list[str]:
        """The languages measured, in order."""
        return list(self.base.stats)

    def features(self, side: Side) -> LanguageFeatures:
        """What one side makes of each feature, per language."""
        return LanguageFeatures.of(side.stats, self.min_frequency, self.specific_share)

    def delta(self, what: str) -> np.ndarray:
        """``[languages, L, F]`` fine-tuned minus base, of ``frequency``, ``active_mean`` or ``mean``."""
        return np.stack(
            [getattr(self.tuned.stats[lang], what) - getattr(self.base.stats[lang], what) for lang in self.languages]
        )

    def fvu(self) -> dict[str, list[tuple[float, float]]]:
        """Per language and layer, ``(base FVU, fine-tuned FVU)``."""
        return {
            lang: [(b.fvu, t.fvu) for b, t in zip(self.base.quality[lang], self.tuned.quality[lang])]
            for lang in self.languages
        }

    def top_changed(self, k: int) -> list[FeatureChange]:
        """The ``k`` features whose mean activation per token changed most in some language."""
        change = np.abs(self.delta("mean")).max(0)  # [L, F]
        order = np.argsort(-change, axis=None, kind="stable")[:k]
        out = []
        for j in order:
            layer, feature = divmod(int(j), change.shape[1])
            if change[layer, feature] <= 0:
                break
            out.append(self.change_of(layer, feature, float(change[layer, feature])))
        return out

    def change_of(self, layer: int, feature: int, change: float = float("nan")) -> FeatureChange:
        """One feature's [`FeatureChange`][workbench.clt.features.diff.FeatureChange] (``change`` as given)."""

        def pair(what: str) -> dict[str, tuple[float, float]]:
            """Language -> (base, fine-tuned) of the statistic ``what``."""
            return {
                lang: (
                    float(getattr(self.base.stats[lang], what)[layer, feature]),
                    float(getattr(self.tuned.stats[lang], what)[layer, feature]),
                )
                for lang in self.languages
            }

        return FeatureChange(layer, feature, pair("frequency"), pair("active_mean"), change)

    def layer_summary(self, changed: float = 0.05) -> list[dict]:
        """Per layer: how much the features' frequencies moved, and the FVU before and after.

        The mean ``|frequency change|`` over features and languages, the features whose frequency
        moved by more than ``changed`` in some language, and the FVU (mean over languages).
        """
        d = np.abs(self.delta("frequency"))
        fvu = self.fvu()
        return [
            {
                "layer": layer,
                "mean |d frequency|": float(d[:, layer].mean()),
                f"features |d frequency| > {changed}": int((d[:, layer].max(0) > changed).sum()),
                "fvu base": float(np.mean([fvu[lang][layer][0] for lang in self.languages])),
                "fvu fine-tuned": float(np.mean([fvu[lang][layer][1] for lang in self.languages])),
            }
            for layer in range(d.shape[1])
        ]

    def language_strength(self) -> list[dict]:
        """Per layer and language: how strongly the language's specific features fire on its own tokens.

        The base's features specific to the language (counted once, on the base side) and, on the
        language's own tokens, their mean frequency and mean activation per token before and after.
        A fine-tune that strengthens a language raises its row.
        """
        specific = self.features(self.base).specific()  # [languages, L, F]
        rows = []
        for i, lang in enumerate(self.languages):
            b, t = self.base.stats[lang], self.tuned.stats[lang]
            for layer in range(specific.shape[1]):
                kept = specific[i, layer]
                if not kept.any():
                    continue
                rows.append(
                    {
                        "layer": layer,
                        "language": lang,
                        "features": int(kept.sum()),
                        "frequency base": float(b.frequency[layer, kept].mean()),
                        "frequency fine-tuned": float(t.frequency[layer, kept].mean()),
                        "mean base": float(b.mean[layer, kept].mean()),
                        "mean fine-tuned": float(t.mean[layer, kept].mean()),
                    }
                )
        return rows

    def identity(self, k: int = 8) -> list[dict]:
        """Per language, its ``k`` best identity features in the base model and their score before and after.

        The base's features: has the language's identity weakened?
        """
        base, tuned = self.features(self.base), self.features(self.tuned)
        rows = []
        for i, lang in enumerate(self.languages):
            for layer, feature in base.identity_features(lang, k):
                rows.append(
                    {
                        "language": lang,
                        "feature": f"L{layer}/{feature}",
                        "score base": float(base.identity_score()[i, layer, feature]),
                        "score fine-tuned": float(tuned.identity_score()[i, layer, feature]),
                        "frequency base": float(base.frequency[i, layer, feature]),
                        "frequency fine-tuned": float(tuned.frequency[i, layer, feature]),
                    }
                )
        return rows


__all__ = ["Diff", "FeatureChange", "Side", "measure"]
