"""The PLND slice: every neuron's importance on aligned verses, each language's specific set, report."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from workbench.analyses.plnd.options import Options
from workbench.analyses.plnd.plots import overlap_figure, plnd_layer_figure
from workbench.data.corpus import Corpus
from workbench.models.model import Model
from workbench.neurons.plnd import language_importance
from workbench.neurons.plnd_sets import PLNDResult as Result
from workbench.neurons.plnd_summary import ImportanceSummary
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """PLND (and LAPE counts) per language on aligned analysis verses.

    Each language's summary is saved as soon as it is done and reused by a resumed run.
    """
    selection = options.selection()
    ids = corpus.sample_ids(store.languages, options.documents, "analysis", store.run.seed)
    docs = corpus.parallel(store.languages, ids)

    def summarise(lang: str) -> ImportanceSummary:
        return language_importance(
            model,
            lang,
            docs[lang]["text"],
            ids,
            selection,
            list(options.structures),
            lape=True,
            include_bos=options.include_bos,
            batch_tokens=store.run.batch_tokens,
            on_too_long=store.run.length_policy,
            show_progress=store.show_progress,
        )

    summaries = {
        lang: store.reuse(
            NAME,
            f"{lang}.safetensors",
            lambda: summarise(lang),
            ImportanceSummary.load,
            lambda summary, path: summary.save(path),
        )
        for lang in store.languages
    }
    result = Result.build(model, summaries, selection, {"split": "analysis", **options.to_dict()})
    return store.keep(NAME, result)


def figures(result: Result) -> dict[str, go.Figure]:
    """Specific neurons per layer, and the overlap of the languages' sets."""
    return {"plnd_layers": plnd_layer_figure(result), "plnd_overlap": overlap_figure(result)}


def verdict(result: Result) -> str:
    """How large the sets are, how much of them every language shares, and how stable they are."""
    if not result.sets:
        return ""
    sizes = {lang: len(s) for lang, s in result.sets.items()}
    shared = len(result.shared())
    mean = sum(sizes.values()) / len(sizes)
    stability = [v for v in result.stability.values() if not math.isnan(v)]
    text = (
        f"Each language has {min(sizes.values())}-{max(sizes.values())} specific neurons "
        f"({100 * mean / result.total_neurons():.2f}% of all on average); "
    )
    if len(sizes) > 1:
        text += (
            f"{shared} of them are specific to every language ({shared / mean:.0%} of a mean set): switching "
            "a set off removes these shared neurons too, which is why the deactivation compares it with the "
            "set without them. "
        )
    if stability:
        text += (
            f"The sets found on two halves of the verses agree with Jaccard {min(stability):.2f}-{max(stability):.2f}."
        )
    return text


def section(result: Result) -> Section:
    """The report's section: how neurons are scored and selected, and the verdict."""
    sel = result.selection
    n_docs = max((d["n_documents"] for d in result.documents.values()), default=0)
    rule = {
        "top_fraction": f"among the top {sel.value:.2%} of its layer and structure",
        "top_k": f"among the top {int(sel.value)} of its layer and structure",
        "threshold": f"with importance at least {sel.value:g}",
    }[sel.rule]
    intro = (
        "PLND (Zhao et al. 2024): the importance of a neuron for a document is how much its "
        "sublayer's output changes over the document when the neuron is zeroed (for Q and K, the "
        "paper's approximation: the change of the attention pattern), computed for all neurons "
        f"at once with hooks. A neuron counts as activated for a document when it is {rule}; it "
        f"is specific to a language when activated for {sel.specificity:.0%} of the language's "
        f"{n_docs} aligned verses{' and not specific to every language' if sel.exclusive else ''}. "
        "FFN, V and O importances measure the sublayer output before any post-sublayer norm. "
        "Stability is the Jaccard index between the sets found on the even and on the odd half "
        "of the verses. LAPE (Tang et al. 2024) is a second detector from the same forward "
        "passes, over FFN neurons only; the last columns compare it with PLND's FFN set."
    )
    return Section(
        "PLND: language-specific neurons", intro, verdict(result), list(figures(result).values()), [result.table()]
    )
