"""The clt-graph slice: an attribution graph per parallel prompt and language, and their overlap across languages.

Each graph is made on the run's transcoder
([`workbench.clt.graphs.attribution`][workbench.clt.graphs.attribution]) and pruned by influence;
per layer, the overlap (Jaccard) of the graphs' feature sets across languages
([`workbench.clt.graphs.summary`][workbench.clt.graphs.summary]) has, in the paper, little overlap
at the first layer, a peak in the middle and less again late.

Each graph is a part (``parts/clt-graph-<fp>/graphs/<task>-<item>-<lang>``, reused on resume);
with ``--export`` each is also written as circuit-tracer JSON under ``graphs/`` in the run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.analyses.clt_graph.options import Options
from workbench.analyses.clt_graph.plots import jaccard_figure, kept_figure
from workbench.analyses.clt_graph.result import Result
from workbench.clt.graphs.attribution import Target, attribute
from workbench.clt.graphs.export import top_tokens, write_circuit_tracer
from workbench.clt.graphs.graph import Graph, Pruned
from workbench.clt.graphs.stored_views import stored_view, view_figure, view_of
from workbench.clt.graphs.summary import GraphRow, answer_rank, overlaps, summarise
from workbench.clt.graphs.targets import TargetsOf, targets_of
from workbench.clt.runs.transcoder import transcoder
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.data.prompts import ParallelPrompt, from_text, read_prompts
from workbench.errors import WorkbenchError
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """A graph per prompt and language (parts, reused on resume), then overlaps across languages."""
    clt = transcoder(store)
    prompts = _prompts(options, store.languages)
    target_of = targets_of(model, corpus, options.target)
    shown = list(dict.fromkeys(p.task for p in prompts))[: options.views]
    first_item = {task: next(p.item for p in prompts if p.task == task) for task in shown}
    tokens_of = {p: tokenize(model, [p.prompt], on_too_long="error")[0].to(model.cfg.device) for p in prompts}
    graphs = _graphs(model, clt, tokens_of, target_of, options, store)
    rows: list[GraphRow] = []
    views = []
    for p in prompts:
        graph = graphs[_key(p)]
        pruned = graph.prune(options.node_threshold, options.edge_threshold)
        rows.append(summarise(p, graph, pruned, answer_rank(model, tokens_of[p], p.continuation), _folder(store, p)))
        if options.export and store.folder is not None:
            path = Path(store.folder) / "graphs" / f"{p.task}-{p.item}-{p.language}.json"
            _export(model, clt, graph, pruned, path, options, store)
        if first_item.get(p.task) == p.item:
            views.append(stored_view(model, clt, graph, pruned, p))
    languages = sorted({r.language for r in rows}, key=store.languages.index)
    n_layers = clt.config.n_layers
    return store.keep(NAME, Result(languages, n_layers, rows, overlaps(rows, n_layers), views, options.to_dict()))


def _key(p: ParallelPrompt) -> str:
    return f"graphs/{p.task}-{p.item}-{p.language}"


def _folder(store: Store, p: ParallelPrompt) -> str:
    """The folder of ``p``'s graph, relative to the run folder ("" without one)."""
    part = store.part(NAME, _key(p))
    return str(part.relative_to(store.folder)) if part is not None and store.folder is not None else ""


def _prompts(options: Options, languages: list[str]) -> list[ParallelPrompt]:
    """The prompts to attribute, in the run's languages that the chosen tasks have.

    One given prompt, a user's file, or the shipped parallel set.
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


def _graphs(
    model: Model,
    clt: CrossLayerTranscoder,
    tokens_of: dict[ParallelPrompt, Int[torch.Tensor, " pos"]],
    target_of: TargetsOf,
    options: Options,
    store: Store,
) -> dict[str, Graph]:
    """Every prompt's graph by part key: loaded where a run finished it, else attributed."""
    bar = tqdm(total=len(tokens_of), desc="clt-graph", unit=" graphs", disable=not store.show_progress)

    def graph_of(p: ParallelPrompt) -> Graph:
        graph = _attribute(model, clt, tokens_of[p], target_of(p), options, p, store)
        bar.update(1)
        return graph

    work = {_key(p): (lambda p=p: graph_of(p)) for p in tokens_of}  # graphs shared by torchrun's processes
    graphs = dict(zip(work, store.reuse_each(NAME, work, Graph.load, _save_graph)))
    bar.update(bar.total - bar.n)  # the graphs a resumed run loaded
    bar.close()
    return graphs


def _attribute(
    model: Model,
    clt: CrossLayerTranscoder,
    tokens: Int[torch.Tensor, " pos"],
    targets: list[Target] | None,
    options: Options,
    p: ParallelPrompt,
    store: Store,
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


def _save_graph(graph: Graph, path: Path) -> None:
    graph.save(path)


def _export(
    model: Model, clt: CrossLayerTranscoder, graph: Graph, pruned: Pruned, path: Path, options: Options, store: Store
) -> None:
    """Write ``graph`` as circuit-tracer JSON, each kept feature labelled with its top tokens."""
    kept = np.nonzero(pruned.nodes[graph.span("feature")])[0]
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


def figures(result: Result) -> dict[str, go.Figure]:
    """The overlap and kept-features figures, and one figure per stored view."""
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
    """The report's section: how the graphs are made, pruned and scored, and the verdict."""
    s = result.settings
    intro = (
        "Attribution graphs on the local replacement model: attention patterns and norm scales frozen at their "
        "values on the prompt, every MLP replaced by the transcoder's features plus an error node per layer and "
        "position, token embeddings as inputs (a skip transcoder's skip is no node: a linear path through the "
        "frozen norm, part of the frozen model). Edges are direct effects (a feature's activation times its decoders "
        "read through the frozen model); influence is the share of the targets' weight that reaches a node through "
        f"the graph. Pruning keeps the nodes holding {s.get('node_threshold')} of the influence, then the edges "
        f"holding {s.get('edge_threshold')}. The replacement score is the share of the inputs' influence that does "
        "not pass through error nodes; completeness the influence-weighted share of each node's input that comes "
        f"from features and tokens. Target: {s.get('target')}. The same prompt in every language gives per layer the "
        "Jaccard overlap of the kept features. Hover a feature in a graph for the tokens its decoders promote."
    )
    return Section(
        "Attribution graphs across languages",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.jaccard_table(), result.table()],
    )
