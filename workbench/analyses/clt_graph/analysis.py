"""The clt-graph slice: an attribution graph per parallel prompt and language on the run's
transcoder ([`workbench.clt.attribution`][workbench.clt.attribution]), pruned by influence, and per layer the overlap
(Jaccard) of the graphs' feature sets across languages — the paper's shape is little overlap at
the first layer, a peak in the middle and less again late.

Each graph is a part (``parts/clt-graph-<fp>/graphs/<task>-<item>-<lang>``, reused on resume);
with ``--export`` each is also written as circuit-tracer JSON under ``graphs/`` in the run folder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from workbench.analyses.clt_graph.options import Options
from workbench.analyses.clt_graph.plots import jaccard_figure, kept_figure, view_figure
from workbench.analyses.clt_train.analysis import transcoder
from workbench.clt.attribution import Target, attribute, logit_target, mean_unembedding, token_target
from workbench.clt.graph import Graph, Pruned, jaccard
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.data.prompts import ParallelPrompt, from_text, read_prompts
from workbench.errors import WorkbenchError
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS


@dataclass
class GraphRow:
    """One prompt's graph in one language, summarised."""

    task: str
    item: str
    language: str
    prompt: str
    answer: str
    tokens: int
    targets: list[str]  # labels, most likely first
    target_weight: float  # their summed weight (probability covered, for logits)
    answer_rank: int  # rank of the answer's first token among the model's next-token logits (-1: no answer)
    active: int  # active features on the prompt
    nodes: int  # feature nodes kept by pruning
    errors: int  # error nodes kept
    edges: int  # edges kept
    replacement: float
    completeness: float
    unexplained: float  # share of direct effect held by features left out (over --max-features)
    kept: list[list[int]]  # per layer, the kept features' indices
    part: str = ""  # the graph's folder, relative to the run folder


@dataclass
class Result(Base):
    """Every graph's summary, the overlap of kept features across languages per layer, and views."""

    JSON = "clt-graph.json"

    languages: list[str]
    n_layers: int
    rows: list[GraphRow]
    jaccard: dict[str, list[float]]  # task (and "all") -> per layer mean over items and language pairs
    views: list[dict] = field(default_factory=list)  # small pruned graphs drawn in the report
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [{k: v for k, v in row.__dict__.items() if k not in ("kept", "part")} for row in self.rows]

    def jaccard_table(self) -> list[dict]:
        return [
            {"tasks": task, **{f"layer {i}": v for i, v in enumerate(values)}} for task, values in self.jaccard.items()
        ]


def run(model, corpus: Corpus, options: Options, store: Store) -> Result:
    """A graph per prompt and language (parts, reused on resume), then overlaps across languages."""
    clt = transcoder(store)
    prompts = _prompts(options, store.languages)
    target_of = _targets(model, corpus, options)
    shown = list(dict.fromkeys(p.task for p in prompts))[: options.views]
    first_item = {task: next(p.item for p in prompts if p.task == task) for task in shown}
    tokens_of = {p: tokenize(model, [p.prompt], on_too_long="error")[0].to(model.cfg.device) for p in prompts}
    bar = tqdm(total=len(prompts), desc="clt-graph", unit=" graphs", disable=not store.show_progress)

    def graph_of(p: ParallelPrompt) -> Graph:
        graph = _attribute(model, clt, tokens_of[p], target_of(p), options, p, store)
        bar.update(1)
        return graph

    work = {_key(p): (lambda p=p: graph_of(p)) for p in prompts}  # graphs shared by torchrun's processes
    graphs = dict(zip(work, store.reuse_each(NAME, work, Graph.load, lambda g, path: g.save(path))))
    bar.update(bar.total - bar.n)  # the graphs a resumed run loaded
    bar.close()
    rows, views = [], []
    for p in prompts:
        tokens, key = tokens_of[p], _key(p)
        graph = graphs[key]
        pruned = graph.prune(options.node_threshold, options.edge_threshold)
        part = store.part(NAME, key)
        rows.append(
            summarise(
                p,
                graph,
                pruned,
                answer_rank(model, tokens, p.continuation),
                str(part.relative_to(store.folder)) if part is not None else "",
            )
        )
        if options.export and store.folder is not None:
            _export(
                model,
                clt,
                graph,
                pruned,
                Path(store.folder) / "graphs" / f"{p.task}-{p.item}-{p.language}.json",
                options,
                store,
            )
        if first_item.get(p.task) == p.item:
            views.append(stored_view(model, clt, graph, pruned, p))
    result = Result(
        sorted({r.language for r in rows}, key=store.languages.index),
        clt.config.n_layers,
        rows,
        overlaps(rows, clt.config.n_layers),
        views,
        options.to_dict(),
    )
    return store.keep(NAME, result)


def _key(p: ParallelPrompt) -> str:
    return f"graphs/{p.task}-{p.item}-{p.language}"


def _prompts(options: Options, languages: list[str]) -> list[ParallelPrompt]:
    """The prompts to attribute: one given prompt, a user's file, or the shipped parallel set, in
    the run's languages that the chosen tasks have.
    """
    if options.prompt:
        return from_text(options.prompt, languages[0]).prompts(None, [languages[0]])
    prompts = read_prompts(options.prompts or None, languages[0])
    tasks = list(options.tasks) or prompts.task_names()
    if "custom" in prompts.tasks:
        return prompts.prompts(None, [languages[0]])
    has = set().union(*(prompts.languages_of(task) for task in tasks))
    chosen = [lang for lang in languages if lang in has]
    if not chosen:
        raise WorkbenchError(
            f"The prompts of {', '.join(tasks)} are in {', '.join(sorted(has))}, none of the run's "
            f"--languages ({', '.join(languages)}); add one of theirs to --languages."
        )
    return prompts.prompts(tasks, chosen)


def _targets(model, corpus: Corpus, options: Options):
    """A function giving a prompt's targets (``None``: the top logits)."""
    kind, _, arg = options.target.partition(":")
    if kind == "token":
        fixed = [token_target(model, arg)]
        return lambda p: fixed
    if kind == "language":
        from workbench.language.langid import default_classifier, vocab_languages

        vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
        ids = np.nonzero(vocab.is_label(arg))[0].tolist()
        fixed = [mean_unembedding(model, ids, f"language {arg}")]
        return lambda p: fixed
    if kind == "answer":
        return lambda p: [logit_target(model, _answer_token(model, p))]
    return lambda p: None


def _answer_token(model, p: ParallelPrompt) -> int:
    if not p.answer:
        raise WorkbenchError(f"Prompt {p.task}/{p.item} ({p.language}) has no answer; use --clt-graph-target logits.")
    return int(model.to_tokens(p.continuation, prepend_bos=False)[0, 0])


def answer_rank(model, tokens: torch.Tensor, answer: str) -> int:
    """The rank of ``answer``'s first token among the model's next-token logits (0: the top; -1: no answer)."""
    if not answer:
        return -1
    with torch.no_grad():
        logits = model(tokens[None])[0, -1]
    token = int(model.to_tokens(answer, prepend_bos=False)[0, 0])
    return int((logits > logits[token]).sum())


def _attribute(
    model, clt, tokens, targets: list[Target] | None, options: Options, p: ParallelPrompt, store: Store
) -> Graph:
    graph = attribute(
        model,
        clt,
        tokens,
        targets,
        probability=options.probability,
        max_logits=options.max_logits,
        max_features=options.max_features,
        batch=options.batch,
        prompt=p.prompt,
    )
    graph.meta.update({"model": store.run.model, "task": p.task, "item": p.item, "language": p.language})
    return graph


def summarise(p: ParallelPrompt, graph: Graph, pruned: Pruned, rank: int, part: str) -> GraphRow:
    replacement, completeness = graph.scores()
    features = pruned.nodes[graph.span("feature")]
    return GraphRow(
        p.task,
        p.item,
        p.language,
        p.prompt,
        p.answer,
        graph.n_pos,
        [t.label for t in graph.targets],
        float(sum(t.weight for t in graph.targets)),
        rank,
        int(graph.meta["active_features"]),
        int(features.sum()),
        int(pruned.nodes[graph.span("error")].sum()),
        int(pruned.edges.sum()),
        replacement,
        completeness,
        float(graph.meta["unexplained"]),
        [sorted(s) for s in graph.feature_sets(pruned.nodes)],
        part,
    )


def overlaps(rows: list[GraphRow], n_layers: int) -> dict[str, list[float]]:
    """Per task (and over all, ``"all"``), per layer: the mean Jaccard overlap of the kept feature
    sets of every pair of languages on the same item.
    """
    per: dict[str, list[list[float]]] = {}
    items: dict[tuple[str, str], list[GraphRow]] = {}
    for row in rows:
        items.setdefault((row.task, row.item), []).append(row)
    for (task, _), group in items.items():
        for a, b in itertools.combinations(group, 2):
            values = [jaccard(set(a.kept[layer]), set(b.kept[layer])) for layer in range(n_layers)]
            per.setdefault(task, []).append(values)
            per.setdefault("all", []).append(values)
    return {task: _nanmean_columns(values) for task, values in per.items()}


def _nanmean_columns(values: list[list[float]]) -> list[float]:
    array = np.array(values, dtype=float)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(array)).sum(0)
        return [float(x) if c else float("nan") for x, c in zip(np.nansum(array, 0) / np.maximum(counts, 1), counts)]


def _export(model, clt, graph: Graph, pruned: Pruned, path: Path, options: Options, store: Store) -> None:
    from workbench.clt.export import top_tokens, write_circuit_tracer

    features = graph.span("feature")
    kept = np.nonzero(pruned.nodes[features])[0]
    labels = dict(zip(kept.tolist(), top_tokens(model, clt, graph.features[kept])))
    write_circuit_tracer(
        graph,
        pruned,
        path,
        slug=path.stem,
        scan=str(store.run.model),
        node_threshold=options.node_threshold,
        clerps=labels,
    )


def stored_view(model, clt, graph: Graph, pruned: Pruned, p: ParallelPrompt) -> dict:
    """A small pruned graph (kept features, strongest edges) with each feature's top tokens, for the report."""
    from workbench.clt.export import top_tokens

    small, kept = graph.subgraph(pruned)
    labels = top_tokens(model, clt, small.features) if small.n_features else []
    return {
        "task": p.task,
        "item": p.item,
        "language": p.language,
        "graph": small.to_dict(),
        "nodes": kept.nodes.tolist(),
        "cumulative": kept.cumulative.tolist(),
        "influence": kept.influence.tolist(),
        "labels": {str(i): text for i, text in enumerate(labels)},
    }


def view_of(view: dict) -> tuple[Graph, Pruned, dict[int, str]]:
    """A stored view back as the graph, pruning and labels the figure draws."""
    graph = Graph.from_dict(view["graph"])
    pruned = Pruned(
        np.array(view["nodes"], bool), graph.adjacency != 0, np.array(view["cumulative"]), np.array(view["influence"])
    )
    return graph, pruned, {int(k): v for k, v in view["labels"].items()}


def figures(result: Result) -> dict[str, go.Figure]:
    out = {"clt_graph_jaccard": jaccard_figure(result), "clt_graph_kept": kept_figure(result)}
    for view in result.views:
        out[f"clt_graph_{view['task']}_{view['item']}_{view['language']}"] = view_figure(*view_of(view), view)
    return out


def verdict(result: Result) -> str:
    """The overlap's shape across layers against the paper's, and how much of each graph is features."""
    rows = result.rows
    scores = (
        f"Over {len(rows)} graphs, the replacement score is {np.mean([r.replacement for r in rows]):.2f} and the "
        f"completeness score {np.mean([r.completeness for r in rows]):.2f} on average; pruning keeps "
        f"{np.mean([r.nodes for r in rows]):.0f} feature nodes of {np.mean([r.active for r in rows]):.0f} active."
    )
    overlap = result.jaccard.get("all")
    if not overlap or all(np.isnan(overlap)):
        return scores + " With one language there is no overlap across languages to measure."
    values = np.nan_to_num(np.array(overlap), nan=0.0)
    peak = int(np.argmax(values))
    shape = 0 < peak < len(values) - 1 and values[0] < values[peak] and values[-1] < values[peak]
    claim = (
        "matches the paper's shape (low at the first layer, a peak in the middle, lower late)"
        if shape
        else "does not match the paper's shape (low at the first layer, a peak in the middle, lower late)"
    )
    ranks = [r.answer_rank for r in rows if r.answer_rank >= 0]
    answers = (
        f" The expected answer is the top next token in {sum(r == 0 for r in ranks)} of {len(ranks)} prompts."
        if ranks
        else ""
    )
    return (
        f"Overlap of kept features across languages (Jaccard, mean over items and language pairs) per layer: "
        f"{', '.join(f'{v:.3f}' for v in overlap)}, highest in layer {peak}. This {claim}. {scores}{answers}"
    )


def section(result: Result) -> Section:
    s = result.settings
    intro = (
        "Attribution graphs on the local replacement model: attention patterns and norm scales frozen at their values "
        "on the prompt, every MLP replaced by the transcoder's features plus an error node per layer and position, token "
        "embeddings as inputs. Edges are direct effects (a feature's activation times its decoders read through the "
        "frozen model); influence is the share of the targets' weight that reaches a node through the graph. Pruning "
        f"keeps the nodes holding {s.get('node_threshold')} of the influence, then the edges holding "
        f"{s.get('edge_threshold')}. The replacement score is the share of the inputs' influence that does not pass "
        "through error nodes; completeness the influence-weighted share of each node's input that comes from features "
        f"and tokens. Target: {s.get('target')}. The same prompt in every language gives per layer the Jaccard overlap "
        "of the kept features. Hover a feature in a graph for the tokens its decoders promote."
    )
    return Section(
        "Attribution graphs across languages",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.jaccard_table(), result.table()],
    )
