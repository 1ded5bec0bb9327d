"""The clt-features slice: every transcoder feature's frequency and mean activation per language.

On parallel held-out verses ([`workbench.clt.features.stats`][workbench.clt.features.stats]): language-specific,
multilingual and rare features per layer; identity features with their cards
([`workbench.clt.features.cards`][workbench.clt.features.cards]); agreement with PLND's FFN neurons where a
PLND result is in the run ([`workbench.clt.features.layers`][workbench.clt.features.layers]).

The per-language statistics are parts (``<lang>-stats.npz``), reused by a resumed run.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_features.options import Options
from workbench.analyses.clt_features.plots import cards_figure, counts_figure, share_figure
from workbench.analyses.clt_features.result import Result
from workbench.clt.features.cards import FeatureCard, card_contexts, identity_cards, multilingual_cards
from workbench.clt.features.layers import plnd_agreement, share_bins
from workbench.clt.features.stats import LanguageFeatures
from workbench.clt.runs.measures import stats_per_language
from workbench.clt.runs.transcoder import transcoder
from workbench.data.corpus import Corpus
from workbench.errors import MissingResultError
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Statistics per language (saved as they finish), then what they make of every feature."""
    clt = transcoder(store)
    held = store.documents(model, corpus, options.documents, "heldout", seed_offset=1)
    stats = stats_per_language(store, NAME, lambda lang: f"{lang}-stats.npz", model, clt, held)
    feats = LanguageFeatures.of(stats, options.min_frequency, options.specific_share)
    identity = identity_cards(feats, options.identity)
    multilingual = multilingual_cards(feats, options.cards)
    cards = [c for cards in identity.values() for c in cards[: options.cards]] + multilingual
    features = [(c.layer, c.feature) for c in cards]
    found = card_contexts(model, clt, held, feats.languages, features, options.contexts, store.run.batch_tokens)
    for card, contexts in zip(cards, found):
        card.contexts.update(contexts)
    result = Result(
        feats.languages,
        clt.config.n_layers,
        clt.config.n_features,
        {k: s.tokens for k, s in stats.items()},
        feats.layer_counts(),
        identity,
        multilingual,
        share_bins(feats),
        _plnd_agreement(store, feats),
        options.to_dict(),
    )
    return store.keep(NAME, result)


def _plnd_agreement(store: Store, feats: LanguageFeatures) -> dict:
    """[`plnd_agreement`][workbench.clt.features.layers.plnd_agreement] with the run's PLND result.

    Empty without a PLND result in the run (``--analyses plnd,clt-features``).
    """
    try:
        plnd = store.result("plnd")
    except MissingResultError:
        return {}
    return plnd_agreement(plnd, feats)


def figures(result: Result) -> dict[str, go.Figure]:
    """The feature kinds per layer, the languages' shares, and the identity cards."""
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
        text += " Strongest identity feature per language: " + "; ".join(map(_strongest, strongest)) + "."
    if result.plnd:
        rho = result.plnd["spearman"]
        said = "undefined (one side is the same in every cell)" if rho is None or np.isnan(rho) else f"{rho:+.2f}"
        text += f" Against PLND's FFN neurons per language and layer: Spearman {said}."
    return text


def _strongest(language_card: tuple[str, FeatureCard]) -> str:
    lang, c = language_card
    other = max(v for k, v in c.frequency.items() if k != lang)
    return f"{lang} {c.name()} (active on {c.frequency[lang]:.0%} of {lang} tokens, at most {other:.0%} of another's)"


def section(result: Result) -> Section:
    """The report's section: what makes a feature specific, multilingual or an identity feature, and the verdict."""
    s = result.settings
    intro = (
        f"Every feature's frequency (share of a language's tokens it is active on) on {s.get('documents', '?')} "
        f"parallel held-out verses per language. A feature is <em>used</em> by a language at frequency >= "
        f"{s.get('min_frequency')}; <em>specific</em> to one when that language holds >= {s.get('specific_share')} "
        "of its summed frequency; <em>multilingual</em> when every language uses it. The identity score of a feature "
        "for a language is its frequency there minus its highest frequency in any other: the paper's high-frequency "
        "language-identity features score near 1. Cards list each feature's top activating tokens in context "
        "([token] is where it fires). Where the run has PLND, its FFN neurons per language and layer are set beside "
        "the specific features per language and layer."
    )
    tables = [result.layer_counts, result.identity_table(), result.card_rows()]
    if result.plnd:
        tables.append(result.plnd["cells"])
    return Section(
        "Transcoder features: language-specific and multilingual",
        intro,
        verdict(result),
        list(figures(result).values()),
        tables,
    )
