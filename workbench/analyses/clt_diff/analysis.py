"""The clt-diff slice: the run's transcoder (made for the base model) applied to the base model and
to a fine-tuned one ([`workbench.clt.diff`][workbench.clt.diff]): per feature and language the change in
frequency and magnitude, per layer the change in reconstruction error, per language the change in
its identity features' strength; the features that changed most, with cards; and one prompt's
attribution graph before and after, with the overlap of their kept features per layer.

The fine-tuned model is a finetune delta applied to the run's model by parametrization (the
model's weights are never edited in place), or another model of the same shape and tokenizer.
Each side's statistics per language are parts, reused on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_diff.options import Options
from workbench.analyses.clt_diff.plots import fvu_figure, identity_figure, layers_figure, strength_figure
from workbench.analyses.clt_graph import Options as GraphOptions
from workbench.analyses.clt_graph.analysis import GraphRow, answer_rank, stored_view, summarise, view_of
from workbench.analyses.clt_graph.plots import view_figure
from workbench.analyses.clt_train.analysis import transcoder
from workbench.clt.attribution import attribute
from workbench.clt.diff import Diff, FeatureChange, Side
from workbench.clt.features import Context, FeatureStats, feature_stats, top_contexts
from workbench.clt.graph import Graph, jaccard
from workbench.clt.quality import LayerQuality, layer_quality
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.data.prompts import PromptSet
from workbench.errors import WorkbenchError
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS
SIDES = ("base", "tuned")
SIDE_NAMES = {"base": "base", "tuned": "fine-tuned"}


@dataclass
class ChangeCard:
    """A feature that changed most, with its top contexts per language (on the base model)."""

    change: FeatureChange
    contexts: dict[str, list[Context]] = field(default_factory=dict)


@dataclass
class Result(Base):
    """What changed, by layer, language and feature, and the graph before and after."""

    JSON = "clt-diff.json"

    tuned: str
    languages: list[str]
    n_layers: int
    layers: list[dict]
    fvu: dict[str, list[list[float]]]  # language -> per layer (base, fine-tuned)
    identity: list[dict]
    changed: list[ChangeCard]
    graphs: list[GraphRow] = field(default_factory=list)  # the prompt's graph: base, then fine-tuned
    graph_overlap: list[float] = field(default_factory=list)  # per layer, Jaccard of their kept features
    views: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    target: str = ""  # the fine-tuned language, where the tuned model is a finetune delta
    strength: list[dict] = field(default_factory=list)  # per layer and language: its specific features, before/after

    def strength_change(self, language: str, what: str = "frequency") -> dict[int, float]:
        """Per layer, the change (fine-tuned minus base) of ``language``'s specific features'
        mean ``frequency`` or ``mean`` activation on its own tokens.
        """
        return {
            r["layer"]: r[f"{what} fine-tuned"] - r[f"{what} base"] for r in self.strength if r["language"] == language
        }

    def table(self) -> list[dict]:
        return self.layers

    def changed_table(self) -> list[dict]:
        return [
            {
                "feature": c.change.name(),
                "largest change of mean activation": c.change.change,
                **{f"freq {lang}": f"{b:.3f} -> {t:.3f}" for lang, (b, t) in c.change.frequency.items()},
                "top contexts (base)": " | ".join(
                    x.text.replace("\n", " ") for ctx in list(c.contexts.values())[:1] for x in ctx
                ),
            }
            for c in self.changed
        ]


@contextmanager
def tuned_model(spec: str, model, store: Store) -> Iterator:
    """The fine-tuned model for the block, and the language it was fine-tuned on ("" where
    unknown): a delta applied to ``model`` (its metadata names the language), or another model loaded.
    """
    path = Path(spec)
    if path.suffix == ".safetensors":
        from workbench.interventions.finetune import NeuronDelta

        if not path.is_file():
            raise WorkbenchError(f"No delta file {path}; finetune deltas are under RESULTS/parts/finetune-*/deltas/.")
        delta = NeuronDelta.load(path)
        try:
            delta.check_fits(model)
        except ValueError as exc:
            raise WorkbenchError(f"{exc} Run clt-diff with --model the base model the delta was trained on.") from None
        with delta.applied(model):
            yield model, str(delta.meta.get("target", ""))
        return
    from workbench.models.loading import load_model

    other = load_model(spec, device=store.run.device)
    _check_same_shape(model, other, spec)
    yield other, ""


def run_delta(options: Options, store: Store) -> Path:
    """The delta of this run's finetune of ``options.finetune_language``'s neurons (default: the
    finetune's first target) trained on the most documents.
    """
    finetune = store.result("finetune")
    runs = [r for r in finetune.runs if r.kind == "language" and r.delta_file]
    language = options.finetune_language or (runs[0].target if runs else "")
    mine = [r for r in runs if r.target == language]
    if not mine:
        raise WorkbenchError(
            f"This run's finetune saved no delta of {language or 'any language'}'s neurons "
            f"(trained: {', '.join(sorted({r.target for r in runs})) or 'none'}); add it with "
            f"--finetune-languages {language or 'LANG'}, and give the run an --out folder."
        )
    return Path(store.folder) / max(mine, key=lambda r: r.size).delta_file


def _check_same_shape(model, other, spec: str) -> None:
    keys = (
        "n_layers",
        "d_model",
        "d_vocab",
        "d_mlp",
        "n_heads",
        "gated_mlp",
        "normalization_type",
        "act_fn",
        "positional_embedding_type",
    )
    differ = [k for k in keys if getattr(model.cfg, k) != getattr(other.cfg, k)]
    if differ:
        raise WorkbenchError(
            f"{spec} differs from the run's model in {', '.join(differ)}; the base transcoder reads "
            "only a fine-tune of the run's model (same shape and tokenizer)."
        )
    sample = "In the beginning God created the heaven and the earth."
    if (
        other.tokenizer is not None
        and model.tokenizer is not None
        and other.to_tokens(sample).tolist() != model.to_tokens(sample).tolist()
    ):
        raise WorkbenchError(
            f"{spec} tokenizes text differently from the run's model; diff a fine-tune of the same model."
        )


def run(model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Both sides' statistics (parts), what changed, the cards, and the prompt's graph before and after."""
    clt = transcoder(store)
    held = store.documents(model, corpus, options.documents, "heldout", seed_offset=1)
    prompt = _prompt(options, store)
    tokens = tokenize(model, [prompt.prompt], on_too_long="error")[0].to(model.cfg.device)
    thresholds = (GraphOptions().node_threshold, GraphOptions().edge_threshold)
    sides, graphs, pruned, ranks, views = {}, {}, {}, {}, {}

    def read(which, side: str) -> None:
        sides[side], graphs[side] = _side(which, clt, held, tokens, prompt, side, store)
        pruned[side] = graphs[side].prune(*thresholds)
        ranks[side] = answer_rank(which, tokens, prompt.continuation)
        views[side] = {**stored_view(which, clt, graphs[side], pruned[side], prompt), "side": SIDE_NAMES[side]}

    spec = str(run_delta(options, store)) if options.run_finetune else options.tuned
    with tuned_model(spec, model, store) as (tuned, target):  # a delta patches the run's model for this block only
        read(tuned, "tuned")
    read(model, "base")
    diff = Diff(sides["base"], sides["tuned"])
    changed = [ChangeCard(c) for c in diff.top_changed(options.top)]
    for lang in diff.languages:  # one pass over a language's verses for every card
        found = top_contexts(
            model,
            clt,
            held[lang],
            [(c.change.layer, c.change.feature) for c in changed],
            options.contexts,
            batch_tokens=store.run.batch_tokens,
        )
        for card, contexts in zip(changed, found):
            if contexts:
                card.contexts[lang] = contexts
    rows = [summarise(prompt, graphs[side], pruned[side], ranks[side], "") for side in SIDES]
    overlap = [jaccard(set(a), set(b)) for a, b in zip(rows[0].kept, rows[1].kept)]
    fvu = {lang: [list(pair) for pair in pairs] for lang, pairs in diff.fvu().items()}
    shown = f"{options.tuned}: {Path(spec).relative_to(store.folder)}" if options.run_finetune else spec
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
        [views[side] for side in SIDES],
        options.to_dict(),
        target,
        diff.language_strength(),
    )
    return store.keep(NAME, result)


def _prompt(options: Options, store: Store):
    language = options.language or store.languages[0]
    prompts = PromptSet.load().prompts([options.task], [language])
    if not prompts:
        raise WorkbenchError(
            f"Task {options.task} has no prompt in {language}; choose another --clt-diff-task or --clt-diff-language."
        )
    return prompts[0]


def _side(model, clt, held: dict, tokens, prompt, side: str, store: Store) -> tuple[Side, Graph]:
    """One model's statistics per language and the prompt's graph (parts, reused on resume)."""
    stats = {
        lang: store.reuse(
            NAME,
            f"{side}-{lang}-stats.npz",
            lambda: feature_stats(model, clt, held[lang], store.run.batch_tokens),
            FeatureStats.load,
            lambda s, path: s.save(path),
        )
        for lang in store.languages
    }
    quality = {
        lang: store.reuse_json(
            NAME,
            f"{side}-{lang}-quality.json",
            lambda: _Quality(layer_quality(model, clt, held[lang], store.run.batch_tokens)),
            _Quality,
        ).rows
        for lang in store.languages
    }
    graph = store.reuse(
        NAME,
        f"{side}-graph",
        lambda: attribute(model, clt, tokens, prompt=prompt.prompt),
        Graph.load,
        lambda g, path: g.save(path),
    )
    return Side(stats, quality), graph


@dataclass
class _Quality:
    rows: list[LayerQuality]


def figures(result: Result) -> dict[str, go.Figure]:
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
        f"the mean change is largest in layer {peak}. Reconstruction error (FVU, mean over languages) per layer, base -> "
        f"fine-tuned: {', '.join(f'{b:.3f} -> {t:.3f}' for b, t in fvu)}."
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
    top = max(own, key=own.get)
    return (
        f" The fine-tuned language {result.target}'s specific features change in frequency on its own tokens by "
        f"{np.mean(list(own.values())):+.4f} on average over layers (most in layer {top}, {own[top]:+.4f}), against "
        f"{np.mean(others) if others else float('nan'):+.4f} for the other languages' own features."
    )


def section(result: Result) -> Section:
    s = result.settings
    intro = (
        f"The run's transcoder, made for the base model, read on the base model and on the fine-tuned one "
        f"(<code>{result.tuned}</code>) over the same {s.get('documents', '?')} held-out verses per language. Its features "
        "are the base model's, so the changes say how fine-tuning changed their use: frequency (share of tokens active), "
        "magnitude (mean activation where active), reconstruction error per layer, and the identity score of each "
        "language's best identity features. Cards show the base model's top contexts of the features that changed most. "
        f"The prompt of task <em>{s.get('task')}</em> is attributed on both models with the same transcoder."
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
            [{k: v for k, v in r.__dict__.items() if k not in ("kept", "part")} for r in result.graphs],
        ],
    )
