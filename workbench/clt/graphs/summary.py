"""An attribution graph summarised in one row, and the overlap of graphs across languages.

A row holds what a report compares between prompts and languages: the targets, the answer's rank,
how much pruning keeps, the graph's scores, and per layer the kept features (whose overlap across
languages, per layer, is the multilingual CLT paper's measure of shared circuitry).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int

from workbench.clt.graphs.graph import Graph, Pruned, jaccard
from workbench.data.prompts import ParallelPrompt
from workbench.models.model import Model


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

    def summary(self) -> dict:
        """The row as a table row: every field but the kept features and the part's folder."""
        return {k: v for k, v in self.__dict__.items() if k not in ("kept", "part")}


def answer_rank(model: Model, tokens: Int[torch.Tensor, " pos"], answer: str) -> int:
    """The rank of ``answer``'s first token among the model's next-token logits after ``tokens``.

    Returns:
        0 where the answer is the top next token, -1 where there is no answer.
    """
    if not answer:
        return -1
    with torch.no_grad():
        logits = model(tokens[None])[0, -1]
    token = int(model.to_tokens(answer, prepend_bos=False)[0, 0])
    return int((logits > logits[token]).sum())


def summarise(prompt: ParallelPrompt, graph: Graph, pruned: Pruned, rank: int, part: str) -> GraphRow:
    """The row of ``prompt``'s ``graph`` as ``pruned`` keeps it.

    Args:
        prompt: The prompt the graph was made on.
        graph: Its attribution graph.
        pruned: What pruning keeps of it.
        rank: The answer's rank ([`answer_rank`][workbench.clt.graphs.summary.answer_rank]).
        part: The graph's folder, relative to the run folder ("" where it has none).
    """
    replacement, completeness = graph.scores()
    features = pruned.nodes[graph.span("feature")]
    return GraphRow(
        prompt.task,
        prompt.item,
        prompt.language,
        prompt.prompt,
        prompt.answer,
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
    """The overlap of the kept features across languages, per task and per layer.

    Per task (and over all tasks, ``"all"``), per layer: the mean Jaccard overlap of the kept
    feature sets of every pair of languages on the same item (NaN where no pair kept a feature).
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
