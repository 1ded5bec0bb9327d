"""The clt-features slice: every transcoder feature's frequency and mean activation per language on
parallel held-out verses; language-specific, multilingual and rare features per layer; identity
features with their cards; agreement with PLND's FFN neurons where a PLND result is in the run.

The per-language statistics are parts (``<lang>-stats.npz``), reused by a resumed run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_features.options import Options
from workbench.analyses.clt_features.plots import cards_figure, counts_figure, share_figure
from workbench.analyses.clt_train.analysis import transcoder
from workbench.clt.features import Context, FeatureStats, LanguageFeatures, feature_stats, top_contexts
from workbench.data.corpus import Corpus
from workbench.errors import MissingResultError
from workbench.ffn.statistics import spearman
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS


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
        return f"L{self.layer}/{self.feature}"


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
        return self.layer_counts

    def identity_table(self) -> list[dict]:
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


def run(model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Statistics per language (saved as they finish), then what they make of every feature."""
    clt = transcoder(store)
    held = store.documents(model, corpus, options.documents, "heldout", seed_offset=1)
    stats = {
        lang: store.reuse(
            NAME,
            f"{lang}-stats.npz",
            lambda: feature_stats(model, clt, held[lang], store.run.batch_tokens),
            FeatureStats.load,
            lambda s, path: s.save(path),
        )
        for lang in store.languages
    }
    feats = LanguageFeatures.of(stats, options.min_frequency, options.specific_share)
    identity = {
        lang: [_card(feats, layer, f, lang) for layer, f in feats.identity_features(lang, options.identity)]
        for lang in feats.languages
    }
    multilingual = _multilingual(feats, options.cards)
    cards = [c for cards in identity.values() for c in cards[: options.cards]] + multilingual
    for lang in feats.languages:  # one pass over a language's verses for every card
        found = top_contexts(
            model,
            clt,
            held[lang],
            [(c.layer, c.feature) for c in cards],
            options.contexts,
            batch_tokens=store.run.batch_tokens,
        )
        for card, contexts in zip(cards, found):
            if contexts:
                card.contexts[lang] = contexts
    result = Result(
        feats.languages,
        clt.config.n_layers,
        clt.config.n_features,
        {k: s.tokens for k, s in stats.items()},
        feats.layer_counts(),
        identity,
        multilingual,
        _share_bins(feats),
        _plnd_agreement(store, feats),
        options.to_dict(),
    )
    return store.keep(NAME, result)


def _card(feats: LanguageFeatures, layer: int, feature: int, kind: str) -> FeatureCard:
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


def _multilingual(feats: LanguageFeatures, n: int) -> list[FeatureCard]:
    """The ``n`` multilingual features used most evenly: highest lowest frequency over languages."""
    low = np.where(feats.multilingual(), feats.frequency.min(0), -np.inf)
    order = np.argsort(-low, axis=None, kind="stable")[:n]
    return [_card(feats, *divmod(int(j), low.shape[1]), "multilingual") for j in order if np.isfinite(low.flat[j])]


def _share_bins(feats: LanguageFeatures) -> list[list[int]]:
    """Per layer, a histogram of used features' top-language share (10 bins over [0, 1])."""
    top = feats.share.max(0)
    used = feats.used.any(0)
    return [
        np.histogram(top[layer][used[layer]], bins=10, range=(0.0, 1.0))[0].tolist() for layer in range(top.shape[0])
    ]


def _plnd_agreement(store: Store, feats: LanguageFeatures) -> dict:
    """Per (language, layer), PLND's FFN neurons and the transcoder's specific features, and the
    rank correlation of the two over those cells: do both find a language in the same layers?
    Empty without a PLND result in the run (``--analyses plnd,clt-features``).
    """
    try:
        plnd = store.result("plnd")
    except MissingResultError:
        return {}
    specific = feats.specific()
    cells = [
        {
            "language": lang,
            "layer": layer,
            "plnd": int(plnd.per_layer(lang).get("ffn", [0] * plnd.n_layers)[layer]),
            "clt": int(specific[i, layer].sum()),
        }
        for i, lang in enumerate(feats.languages)
        if lang in plnd.sets
        for layer in range(plnd.n_layers)
    ]
    if not cells or plnd.n_layers != specific.shape[1]:
        return {}
    rho = spearman(np.array([c["plnd"] for c in cells], float), np.array([c["clt"] for c in cells], float))
    return {"cells": cells, "spearman": float(rho)}


def figures(result: Result) -> dict[str, go.Figure]:
    return {
        "clt_feature_kinds": counts_figure(result),
        "clt_feature_share": share_figure(result),
        "clt_identity_features": cards_figure(result),
    }


def verdict(result: Result) -> str:
    """Where multilingual and language-specific features sit, against the paper's claim."""
    # layers where no feature is ever active (a transcoder of some layers only) have no shape to judge
    counts = [row for row in result.layer_counts if row["rare"] < result.n_features] or result.layer_counts
    multi = [row["multilingual"] for row in counts]
    spec = [row["specific"] for row in counts]
    peak_multi = int(np.argmax(multi))
    middle = 0 < peak_multi < len(counts) - 1
    edge_specific = max(spec[0], spec[-1]) >= max(spec[1:-1], default=0)
    claim = (
        "matches the paper's shape (multilingual in the middle, language-specific at the edges)"
        if middle and edge_specific
        else "does not match the paper's shape (multilingual in the middle, language-specific early and late)"
    )
    where = (
        "" if len(counts) == len(result.layer_counts) else f" over layers {', '.join(str(r['layer']) for r in counts)}"
    )
    text = (
        f"Multilingual features per layer{where}: {', '.join(map(str, multi))} (most in layer "
        f"{counts[peak_multi]['layer']}); language-specific: {', '.join(map(str, spec))}. This {claim}."
    )
    strongest = [(lang, cards[0]) for lang, cards in result.identity.items() if cards]
    if strongest:
        text += (
            " Strongest identity feature per language: "
            + "; ".join(
                f"{lang} {c.name()} (active on {c.frequency[lang]:.0%} of {lang} tokens, at most "
                f"{max(v for k, v in c.frequency.items() if k != lang):.0%} of another's)"
                for lang, c in strongest
            )
            + "."
        )
    if result.plnd:
        rho = result.plnd["spearman"]
        said = "undefined (one side is the same in every cell)" if rho is None or np.isnan(rho) else f"{rho:+.2f}"
        text += f" Against PLND's FFN neurons per language and layer: Spearman {said}."
    return text


def _card_rows(result: Result) -> list[dict]:
    cards = [c for cards in result.identity.values() for c in cards if c.contexts] + result.multilingual
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


def section(result: Result) -> Section:
    s = result.settings
    intro = (
        f"Every feature's frequency (share of a language's tokens it is active on) on {s.get('documents', '?')} parallel "
        f"held-out verses per language. A feature is <em>used</em> by a language at frequency >= "
        f"{s.get('min_frequency')}; <em>specific</em> to one when that language holds >= {s.get('specific_share')} of its "
        "summed frequency; <em>multilingual</em> when every language uses it. The identity score of a feature for a "
        "language is its frequency there minus its highest frequency in any other: the paper's high-frequency "
        "language-identity features score near 1. Cards list each feature's top activating tokens in context "
        "([token] is where it fires). Where the run has PLND, its FFN neurons per language and layer are set beside "
        "the specific features per language and layer."
    )
    tables = [result.layer_counts, result.identity_table(), _card_rows(result)]
    if result.plnd:
        tables.append(result.plnd["cells"])
    return Section(
        "Transcoder features: language-specific and multilingual",
        intro,
        verdict(result),
        list(figures(result).values()),
        tables,
    )
