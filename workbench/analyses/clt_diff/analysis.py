"""The clt-diff slice: the run's transcoder (made for the base model) read on the base model and on a fine-tuned one.

Through [`workbench.clt.features.diff`][workbench.clt.features.diff]: per feature and language the change in
frequency and magnitude, per layer the change in reconstruction error, per language the change in
its identity features' strength; the features that changed most, with cards; and one prompt's
attribution graph before and after, with the overlap of their kept features per layer.

The fine-tuned model is a finetune delta applied to the run's model by parametrization (the
model's weights are never edited in place), or another model of the same shape and tokenizer
([`tuned_model`][workbench.analyses.clt_diff.tuned.tuned_model]). Each side's statistics per
language are parts, reused on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Int

from workbench.analyses.clt_diff.options import Options
from workbench.analyses.clt_diff.plots import fvu_figure, identity_figure, layers_figure, strength_figure
from workbench.analyses.clt_diff.result import ChangeCard, Result
from workbench.analyses.clt_diff.tuned import run_delta, tuned_model
from workbench.clt.features.cards import card_contexts
from workbench.clt.features.diff import Diff, Side
from workbench.clt.graphs.attribution import attribute
from workbench.clt.graphs.graph import Graph, jaccard
from workbench.clt.graphs.options import GraphOptions
from workbench.clt.graphs.stored_views import stored_view, view_figure, view_of
from workbench.clt.graphs.summary import GraphRow, answer_rank, summarise
from workbench.clt.runs.measures import Documents, quality_per_language, stats_per_language
from workbench.clt.runs.transcoder import transcoder
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.data.prompts import ParallelPrompt, PromptSet
from workbench.errors import WorkbenchError
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS
SIDES = ("base", "tuned")
SIDE_NAMES = {"base": "base", "tuned": "fine-tuned"}


@dataclass
class _Read:
    """One model read through the transcoder: its statistics, the prompt's graph summarised, and its view."""

    side: Side
    row: GraphRow
    view: dict[str, Any]


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Both sides' statistics (parts), what changed, the cards, and the prompt's graph before and after."""
    clt = transcoder(store)
    held = store.documents(model, corpus, options.documents, "heldout", seed_offset=1)
    prompt = _prompt(options, store)
    tokens = tokenize(model, [prompt.prompt], on_too_long="error")[0].to(model.cfg.device)
    spec = str(run_delta(options, store)) if options.run_finetune else options.tuned
    with tuned_model(spec, model, store) as (tuned, target):  # a delta patches the run's model for this block only
        reads = {"tuned": _read(tuned, clt, held, tokens, prompt, "tuned", store)}
    reads["base"] = _read(model, clt, held, tokens, prompt, "base", store)
    diff = Diff(reads["base"].side, reads["tuned"].side)
    changed = [ChangeCard(c) for c in diff.top_changed(options.top)]
    features = [(c.change.layer, c.change.feature) for c in changed]
    batch = store.run.batch_tokens
    for card, contexts in zip(
        changed, card_contexts(model, clt, held, diff.languages, features, options.contexts, batch)
    ):
        card.contexts.update(contexts)
    rows = [reads[side].row for side in SIDES]
    overlap = [jaccard(set(a), set(b)) for a, b in zip(rows[0].kept, rows[1].kept)]
    fvu = {lang: [list(pair) for pair in pairs] for lang, pairs in diff.fvu().items()}
    shown = spec
    if options.run_finetune and store.folder is not None:  # run_delta found the delta in the run folder
        shown = f"{options.tuned}: {Path(spec).relative_to(store.folder)}"
    result = Result(
        shown,
        diff.languages,
        clt.config.n_layers,
        diff.layer_summary(),
        fvu,
        diff.identity(options.identity),
        changed,
        rows,
        overlap,
        [reads[side].view for side in SIDES],
        options.to_dict(),
        target,
        diff.language_strength(),
    )
    return store.keep(NAME, result)


def _prompt(options: Options, store: Store) -> ParallelPrompt:
    language = options.language or store.languages[0]
    prompts = PromptSet.load().prompts([options.task], [language])
    if not prompts:
        raise WorkbenchError(
            f"Task {options.task} has no prompt in {language}; choose another --clt-diff-task or --clt-diff-language."
        )
    return prompts[0]


def _read(
    model: Model,
    clt: CrossLayerTranscoder,
    held: Documents,
    tokens: Int[torch.Tensor, " pos"],
    prompt: ParallelPrompt,
    side: str,
    store: Store,
) -> _Read:
    """One model's statistics per language and the prompt's graph (parts, reused on resume), pruned and drawn."""
    stats = stats_per_language(store, NAME, lambda lang: f"{side}-{lang}-stats.npz", model, clt, held)
    quality = quality_per_language(store, NAME, lambda lang: f"{side}-{lang}-quality.json", model, clt, held)
    graph = store.reuse(
        NAME,
        f"{side}-graph",
        lambda: attribute(model, clt, tokens, prompt=prompt.prompt),
        Graph.load,
        _save_graph,
    )
    defaults = GraphOptions()  # pruned as clt-graph prunes by default
    pruned = graph.prune(defaults.node_threshold, defaults.edge_threshold)
    row = summarise(prompt, graph, pruned, answer_rank(model, tokens, prompt.continuation), "")
    view = {**stored_view(model, clt, graph, pruned, prompt), "side": SIDE_NAMES[side]}
    return _Read(Side(stats, quality), row, view)


def _save_graph(graph: Graph, path: Path) -> None:
    graph.save(path)


def figures(result: Result) -> dict[str, go.Figure]:
    """The layer, FVU, identity and strength figures, and the prompt's graph on each side."""
    out = {
        "clt_diff_layers": layers_figure(result),
        "clt_diff_fvu": fvu_figure(result),
        "clt_diff_identity": identity_figure(result),
        "clt_diff_strength": strength_figure(result),
    }
    for view in result.views:
        graph, pruned, labels = view_of(view)
        out[f"clt_diff_graph_{view['side']}"] = view_figure(
            graph, pruned, labels, {**view, "language": f"{view['language']}, {view['side']}"}
        )
    return out


def verdict(result: Result) -> str:
    """Where fine-tuning moved the base model's features, and what it did to reconstruction and identity."""
    moved = [row[next(k for k in row if k.startswith("features |d frequency|"))] for row in result.layers]
    mean_d = [row["mean |d frequency|"] for row in result.layers]
    if not any(mean_d):
        return (
            "Nothing changed: the fine-tuned model uses the base transcoder's features exactly as the base model does."
        )
    peak = int(np.argmax(mean_d))
    fvu = [
        (
            np.mean([result.fvu[lang][layer][0] for lang in result.languages]),
            np.mean([result.fvu[lang][layer][1] for lang in result.languages]),
        )
        for layer in range(result.n_layers)
    ]
    text = (
        f"Features whose frequency moved by more than 0.05 in some language, per layer: {', '.join(map(str, moved))}; "
        f"the mean change is largest in layer {peak}. Reconstruction error (FVU, mean over languages) per layer, "
        f"base -> fine-tuned: {', '.join(f'{b:.3f} -> {t:.3f}' for b, t in fvu)}."
    )
    for lang in result.languages:
        rows = [r for r in result.identity if r["language"] == lang]
        if rows:
            text += (
                f" {lang} identity features: score {np.mean([r['score base'] for r in rows]):.2f} -> "
                f"{np.mean([r['score fine-tuned'] for r in rows]):.2f}."
            )
    text += _strength_verdict(result)
    if result.changed:
        top = result.changed[0].change
        lang = max(top.frequency, key=lambda k: abs(top.frequency[k][1] - top.frequency[k][0]))
        b, t = top.frequency[lang]
        text += f" Most changed feature: {top.name()} ({lang} frequency {b:.2f} -> {t:.2f})."
    if result.graph_overlap:
        text += (
            " The prompt's graph before and after shares, per layer, "
            f"{', '.join(f'{v:.2f}' for v in result.graph_overlap)} of its kept features (Jaccard)."
        )
    return text


def _strength_verdict(result: Result) -> str:
    """Whether the fine-tuned language's own features strengthened more than the others', and where."""
    if not result.target or result.target not in result.languages or not result.strength:
        return ""
    own = result.strength_change(result.target)
    others = [v for lang in result.languages if lang != result.target for v in result.strength_change(lang).values()]
    if not own:
        return f" {result.target} has no specific features in the base transcoder to follow."
    top = max(own, key=lambda layer: own[layer])
    return (
        f" The fine-tuned language {result.target}'s specific features change in frequency on its own tokens by "
        f"{np.mean(list(own.values())):+.4f} on average over layers (most in layer {top}, {own[top]:+.4f}), against "
        f"{np.mean(others) if others else float('nan'):+.4f} for the other languages' own features."
    )


def section(result: Result) -> Section:
    """The report's section: what was read on which model, and the verdict."""
    s = result.settings
    intro = (
        f"The run's transcoder, made for the base model, read on the base model and on the fine-tuned one "
        f"(<code>{result.tuned}</code>) over the same {s.get('documents', '?')} held-out verses per language. Its "
        "features are the base model's, so the changes say how fine-tuning changed their use: frequency (share of "
        "tokens active), magnitude (mean activation where active), reconstruction error per layer, and the identity "
        "score of each language's best identity features. Cards show the base model's top contexts of the features "
        f"that changed most. The prompt of task <em>{s.get('task')}</em> is attributed on both models with the same "
        "transcoder."
    )
    return Section(
        "Model diffing through the base transcoder",
        intro,
        verdict(result),
        list(figures(result).values()),
        [
            result.layers,
            result.strength,
            result.identity,
            result.changed_table(),
            [r.summary() for r in result.graphs],
        ],
    )
