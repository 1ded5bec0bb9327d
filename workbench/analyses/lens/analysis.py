"""The lens slice: decode every layer of aligned verses, label the tokens' languages, report."""

from __future__ import annotations

from typing import cast

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.lens.options import Options
from workbench.analyses.lens.plots import lens_mass_figure, lens_share_figure
from workbench.data.corpus import Corpus
from workbench.language.classifier import default_classifier
from workbench.language.vocabulary import heldout_accuracy, vocab_languages
from workbench.lens.layer_language import LayerLanguages, layer_names, lens_language
from workbench.lens.layer_language import LensResult as Result
from workbench.lens.logit_lens import Positions
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """The logit lens per input language on aligned analysis verses.

    Then the token classifier's accuracy on held-out verses. A finished language is saved at once
    and reused.
    """
    classifier = default_classifier(corpus)
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, classifier)
    ids = corpus.sample_ids(store.languages, options.documents, "analysis", store.run.seed)
    docs = corpus.parallel(store.languages, ids)

    def lens(lang: str) -> LayerLanguages:
        return lens_language(
            model,
            vocab,
            lang,
            docs[lang]["text"],
            ids,
            k=options.k,
            positions=cast(Positions, options.positions),  # one of POSITIONS, checked by Options
            per_doc=options.per_document,
            final_norm=options.final_norm,
            batch_tokens=store.run.batch_tokens,
            seed=store.run.seed,
            on_too_long=store.run.length_policy,
            show_progress=store.show_progress,
        )

    results = {
        lang: store.reuse_json(NAME, f"{lang}.json", lambda: lens(lang), LayerLanguages) for lang in store.languages
    }
    accuracy = heldout_accuracy(
        model.tokenizer, vocab, corpus, store.languages, options.accuracy_documents, store.run.seed
    )
    result = Result(
        results, layer_names(model), {"split": "analysis", **options.to_dict()}, classifier.describe(), accuracy
    )
    return store.keep(NAME, result)


def figures(result: Result) -> dict[str, go.Figure]:
    """The languages' shares of the decoded tokens per layer, and the probability mass on English."""
    return {"lens_share": lens_share_figure(result), "lens_mass": lens_mass_figure(result)}


def verdict(result: Result) -> str:
    """Where English peaks for the non-English inputs, and what the last layer decodes."""
    others = {lang: r for lang, r in result.languages.items() if lang != "en"}
    if not others:
        return "Only English input: no latent-language comparison."
    english = np.array([r.share("english") for r in others.values()])  # [langs, layers]
    mean = english.mean(0)
    peak = int(np.argmax(mean))
    last_input = float(np.mean([r.share("input")[-1] for r in others.values()]))
    mass = np.array([r.mass_english for r in others.values()]).mean(0)
    return (
        f"For the {len(others)} non-English inputs, English tokens make up {mean[peak]:.0%} of the decoded top-k "
        f"at their peak (layer {result.layer_names[peak]}) against {mean[-1]:.0%} at the last layer, where "
        f"input-language tokens make up {last_input:.0%}. The probability mass on English tokens peaks at "
        f"{mass.max():.3f} (layer {result.layer_names[int(np.argmax(mass))]}). An English peak in the middle layers "
        "is what MWork calls thinking in English; a flat curve says this model does not."
    )


def section(result: Result) -> Section:
    """The report's section: how the lens reads and labels tokens, and the verdict."""
    settings = result.settings
    first = next(iter(result.languages.values()))
    intro = (
        "Every layer's residual stream decoded through the final norm and the unembedding "
        f"(logit lens; final norm {'on' if settings.get('final_norm', True) else 'off'}), at "
        f"{first.n_positions} positions of {first.n_documents} aligned verses per language "
        f"(top-{first.k} tokens each). Each decoded token is labelled English, input language, "
        "other language, ambiguous (a word of English and another language) or none "
        "(punctuation, digits, sub-word fragments), from word-frequency lists (wordfreq; Bible "
        "word counts where wordfreq has no list) and the script. MWork (Zhao et al. 2024) reports "
        "non-English tokens early, English in the middle layers, and the input language again at "
        "the end. The second figure shows the probability mass on English vs input-language "
        "tokens (Wendler et al. 2024), with 95% bootstrap bands over verses. The last table gives "
        "the token classifier's precision and recall on held-out verses of known language."
    )
    return Section(
        "Logit lens: the language of every layer",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table(), result.accuracy],
    )
