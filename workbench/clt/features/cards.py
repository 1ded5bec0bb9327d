"""Feature cards: one transcoder feature's place, its use by each language, and its top contexts.

The identity features of each language (highest identity score among its specific features, see
[`LanguageFeatures`][workbench.clt.features.stats.LanguageFeatures]) and the multilingual features used
most evenly get a card; the steering experiment switches the identity cards' features, and the
report shows every card's top activating tokens in context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Int

from workbench.clt.features.stats import Context, LanguageFeatures, top_contexts
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.models.model import Model


@dataclass
class FeatureCard:
    """One feature: where it is, how often and how strongly each language uses it, its contexts."""

    layer: int
    feature: int
    kind: str  # the language it is an identity feature of, or "multilingual"
    frequency: dict[str, float]
    active_mean: dict[str, float]  # mean activation where active
    score: float  # identity score (identity features) or lowest frequency over languages (multilingual)
    contexts: dict[str, list[Context]] = field(default_factory=dict)  # language -> top activations

    def name(self) -> str:
        """The feature's short name, ``L<layer>/<feature>``."""
        return f"L{self.layer}/{self.feature}"


def card(feats: LanguageFeatures, layer: int, feature: int, kind: str) -> FeatureCard:
    """The card of ``(layer, feature)`` as an identity feature of the language ``kind``, or a multilingual one.

    Its score is the identity score for that language, or for ``kind`` ``"multilingual"`` (any
    name that is not a language) the lowest frequency over languages.
    """
    langs = feats.languages
    score = (
        feats.identity_score()[langs.index(kind), layer, feature]
        if kind in langs
        else feats.frequency[:, layer, feature].min()
    )
    return FeatureCard(
        layer,
        feature,
        kind,
        {lang: float(feats.frequency[i, layer, feature]) for i, lang in enumerate(langs)},
        {lang: float(feats.active_mean[i, layer, feature]) for i, lang in enumerate(langs)},
        float(score),
    )


def identity_cards(feats: LanguageFeatures, n: int) -> dict[str, list[FeatureCard]]:
    """Per language, the cards of its ``n`` best identity features, best first."""
    return {
        lang: [card(feats, layer, f, lang) for layer, f in feats.identity_features(lang, n)] for lang in feats.languages
    }


def multilingual_cards(feats: LanguageFeatures, n: int) -> list[FeatureCard]:
    """The ``n`` multilingual features used most evenly: highest lowest frequency over languages."""
    low = np.where(feats.multilingual(), feats.frequency.min(0), -np.inf)
    order = np.argsort(-low, axis=None, kind="stable")[:n]
    return [card(feats, *divmod(int(j), low.shape[1]), "multilingual") for j in order if np.isfinite(low.flat[j])]


def card_contexts(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: dict[str, list[Int[torch.Tensor, " pos"]]],
    languages: list[str],
    features: list[tuple[int, int]],
    k: int,
    batch_tokens: int,
) -> list[dict[str, list[Context]]]:
    """Per feature ``(layer, index)``, its top ``k`` contexts in each language where it is ever active.

    One pass over each language's documents serves every feature (see
    [`top_contexts`][workbench.clt.features.stats.top_contexts]).

    Args:
        model: The model the transcoder reads.
        clt: The transcoder.
        documents: Per language, token lists (BOS first).
        languages: The languages to read, in the order the contexts are listed.
        features: The features, ``(layer, index)``.
        k: Contexts per feature and language.
        batch_tokens: Padded tokens per forward batch.

    Returns:
        Per feature, in order: language -> its contexts (languages where it is never active left out).
    """
    found: list[dict[str, list[Context]]] = [{} for _ in features]
    for lang in languages:
        for contexts, per_feature in zip(
            top_contexts(model, clt, documents[lang], features, k, batch_tokens=batch_tokens), found
        ):
            if contexts:
                per_feature[lang] = contexts
    return found
