"""The loss slice: sample aligned held-out verses, measure each language, report (docs/methods.md §1)."""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.analyses.loss.options import Options
from workbench.analyses.loss.plots import loss_figure
from workbench.data.corpus import Corpus
from workbench.interventions.perplexity import LanguageLoss, language_loss
from workbench.interventions.perplexity import LossResult as Result
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Loss of every language of the run on the same held-out verses.

    A finished language is saved at once and reused by a resumed run.
    """
    ids = corpus.sample_ids(store.languages, options.documents, "heldout", store.run.seed)

    def measure(lang: str) -> LanguageLoss:
        texts = corpus.parallel([lang], ids)[lang]["text"]
        return language_loss(
            model,
            lang,
            ids,
            texts,
            store.run.batch_tokens,
            corpus.source_of(lang),
            store.run.length_policy,
            store.show_progress,
        )

    losses = {
        lang: store.reuse_json(NAME, f"{lang}.json", lambda: measure(lang), LanguageLoss) for lang in store.languages
    }
    return store.keep(NAME, Result(losses, settings={"split": "heldout", **options.to_dict()}))


def figures(result: Result) -> dict[str, go.Figure]:
    """Loss per token and bits per byte, per language."""
    return {"loss": loss_figure(result)}


def verdict(result: Result) -> str:
    """Which languages the model predicts best and worst, per token and per byte."""
    rows = result.table()
    if len(rows) < 2:
        return ""
    by_token = sorted(rows, key=lambda r: r["loss"])
    by_byte = sorted(rows, key=lambda r: r["bits_per_byte"])
    return (
        f"Lowest loss per token: {by_token[0]['language']} ({by_token[0]['loss']:.2f} nats), highest: "
        f"{by_token[-1]['language']} ({by_token[-1]['loss']:.2f}). Per UTF-8 byte, which does not depend on the "
        f"tokenizer: best {by_byte[0]['language']} ({by_byte[0]['bits_per_byte']:.2f} bits), worst "
        f"{by_byte[-1]['language']} ({by_byte[-1]['bits_per_byte']:.2f})."
    )


def section(result: Result) -> Section:
    """The report's section: what the loss is measured on, why per byte too, and the verdict."""
    n_docs = next(iter(result.languages.values())).n_documents if result.languages else 0
    intro = (
        f"Mean next-token cross-entropy (nats per token) on {n_docs} held-out verses per language. "
        "The verses are the <em>same</em> verses in every language (the corpus is aligned), so "
        "differences reflect the language, its tokenisation and the translation, not the content. "
        "Error bars: 95% bootstrap intervals over verses. Loss per token depends on how finely "
        "the tokenizer cuts each script; bits per UTF-8 byte of the same text does not, so the "
        "right panel is the fairer comparison between languages. This is the baseline for the "
        "deactivation and fine-tuning experiments."
    )
    return Section(
        "Per-language loss on held-out parallel verses",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table()],
    )
