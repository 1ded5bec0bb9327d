"""The ablate slice: switch each language's PLND (or LAPE) neurons off, measure every language, report."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from tqdm.auto import tqdm

from workbench.analyses.ablate.options import Options
from workbench.analyses.ablate.plots import (
    comparison_figure,
    cross_language_figure,
    deactivation_figure,
    settings_figure,
)
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.interventions.deactivation import run_deactivation
from workbench.interventions.deactivation_results import AblationResult as Result
from workbench.interventions.deactivation_results import DeactivationResult
from workbench.interventions.measures import MeasureMemo
from workbench.language.classifier import default_classifier
from workbench.language.vocabulary import vocab_languages
from workbench.lens.layer_language import token_categories
from workbench.models.model import Model
from workbench.neurons.selection import SET_NAMES
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """One deactivation experiment per kind of set in ``options.sets``, on the same held-out verses.

    Every measurement is checkpointed (one memo for all kinds, sharing the baseline).
    """
    plnd = store.result("plnd")
    langs = options.language_list(store.languages)
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    ids = corpus.sample_ids(store.languages, options.documents, "heldout", store.run.seed)
    docs = corpus.parallel(langs, ids)
    policy = store.run.length_policy
    tokens = {lang: tokenize(model, docs[lang]["text"], ids, on_too_long=policy) for lang in langs}
    categories = {lang: token_categories(vocab, lang) for lang in langs}
    memo = MeasureMemo(store.part(NAME, "measurements.json"))
    experiments = {}
    with tqdm(desc="deactivation", unit=" runs", disable=not store.show_progress) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update()

        for kind in options.sets:
            sets = plnd.named_sets(kind)
            experiments[kind] = run_deactivation(
                model,
                tokens,
                {lang: sets[lang] for lang in langs},
                categories,
                options,
                memo=memo,
                prefix=f"{kind}/",
                settings={"split": "heldout", "documents": len(ids), "neuron_sets": kind},
                progress=progress,
                batch_tokens=store.run.batch_tokens,
            )
    return store.keep(NAME, Result(experiments, {"split": "heldout", **options.to_dict()}))


def figures(result: Result) -> dict[str, go.Figure]:
    """The kinds side by side, then per kind its damage, cross-language and settings figures."""
    out = {"ablate_comparison": comparison_figure(result)}
    for kind, experiment in result.experiments.items():
        label = f" · {kind}"
        out[f"ablate_{kind}"] = deactivation_figure(experiment, label=label)
        out[f"ablate_{kind}_cross"] = cross_language_figure(experiment, label=label)
        if len(experiment.own) > 1:
            out[f"ablate_{kind}_settings"] = settings_figure(experiment, label=label)
    return out


def experiment_verdict(result: DeactivationResult) -> str:
    """Plain sentences computed from the numbers (no claim the data do not make)."""
    rows = result.table1("loss")
    own = [r["language-specific: delta"] or 0.0 for r in rows]
    others = [r["other languages: mean delta"] or 0.0 for r in rows]
    beats_random = [
        r["language"]
        for r, d in zip(rows, own)
        if d > 2 * max(r["random: delta (mean)"] or 0, 0) + 2 * (r["random: delta (sd)"] or 0)
    ]
    beats_others = [r["language"] for r, d, o in zip(rows, own, others) if d > o]
    n, mean_own, mean_others = len(rows), sum(own) / max(len(own), 1), sum(others) / max(len(others), 1)
    share = f"{mean_others / mean_own:.0%}" if mean_own > 0 else "n/a"
    return (
        f"With its own neurons off, a language's loss rose more than twice as much as with random neurons "
        f"(beyond 2 sd) for {len(beats_random)} of {n} languages ({', '.join(beats_random) or 'none'}), and more "
        f"than the other languages' loss for {len(beats_others)} of {n} ({', '.join(beats_others) or 'none'}). "
        f"On average the own language's loss rose by {mean_own:.3g} nats/token and the other languages' by "
        f"{mean_others:.3g} ({share} of it): the closer to 100%, the less language-specific the effect."
    )


def verdict(result: Result) -> str:
    """Each kind of set's [`experiment_verdict`][workbench.analyses.ablate.analysis.experiment_verdict]."""
    return " ".join(f"{SET_NAMES.get(kind, kind)}: {experiment_verdict(e)}" for kind, e in result.experiments.items())


def continuation_table(result: DeactivationResult) -> list[dict]:
    """Greedy-continuation fidelity: baseline, own neurons off, random neurons off (mean)."""
    rows = []
    for lang in result.languages:
        randoms = [m.continuation_fidelity for m in result.random["all"][lang] if m.continuation_fidelity is not None]
        rows.append(
            {
                "language": lang,
                "continuation fidelity: baseline": result.baseline[lang].continuation_fidelity,
                "own neurons off": result.own["all"][lang].continuation_fidelity,
                "random neurons off (mean)": sum(randoms) / len(randoms) if randoms else None,
            }
        )
    return rows


def section(result: Result) -> Section:
    """The report's section: how neurons are switched off and measured, the controls, and the verdict."""
    first = next(iter(result.experiments.values()))
    groups, opts = first.layer_groups, first.options
    kinds = "; ".join(f"<em>{kind}</em>: {html.escape(SET_NAMES.get(kind, kind))}" for kind in result.experiments)
    intro = (
        f"Each language's neurons are switched off with hooks (the same as zeroing their parameters; no weight is "
        f"edited) and the model is measured on {first.settings.get('documents', '?')} held-out verses per language. "
        f"Sets: {kinds}. PLND's sets include the neurons specific to <em>every</em> language; switching those off "
        "hurts every language alike, so the first figure shows each kind side by side: a language-specific effect "
        "is the gap between the red bar (the language whose neurons are off) and the blue one (the others). Random "
        f"controls switch off as many neurons in every layer and structure ({opts.get('seeds')} seed(s): mean, with "
        "the standard deviation as error bar). Deltas are damage: loss increase in nats per token, accuracy and "
        "fidelity drops. <em>Fidelity</em> is the share of the model's top-1 predictions (and of greedy "
        "continuations of verse beginnings) that are in the input language, among those with a language label. "
        f"Layer groups (MWork): understanding = the first {groups['understanding']} layers, generation = the last "
        f"{groups['generation']}, task-solving = the layers between (attention and FFN separately)."
    )
    tables = [result.comparison("loss")]
    for kind, experiment in result.experiments.items():
        tables += [[{"sets": kind, **row} for row in experiment.table1(m)] for m in ("loss", "accuracy", "fidelity")]
        if opts.get("new_tokens"):
            tables.append([{"sets": kind, **row} for row in continuation_table(experiment)])
    return Section(
        "Deactivation: switching language-specific neurons off",
        intro,
        verdict(result),
        list(figures(result).values()),
        tables,
    )
