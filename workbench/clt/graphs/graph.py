"""An attribution graph: nodes, their direct effects on each other, influence, pruning, scores.

Nodes, in this order (circuit-tracer's, so its scores and pruning read the same):

* ``features``: transcoder features active on the prompt, ``(layer, position, feature)``;
* error nodes, one per (layer, position), layer-major: what the transcoder misses of the MLP output;
* token nodes, one per position: the residual stream's start (token embedding, plus a positional one
  where the model has it);
* targets: the logits (or directions) being explained, at the last position.

``adjacency[t, s]`` is the direct effect of source ``s`` on target ``t`` (see
[`workbench.clt.graphs.attribution`][workbench.clt.graphs.attribution]). Influence (circuit-tracer's
definition) is computed on the row-normalised absolute matrix ``A``: the targets' weights (their
probabilities) pushed back through ``A + A^2 + ...``. Pruning keeps the nodes holding
``node_threshold`` of the influence, then the edges holding ``edge_threshold`` of the edge
influence, then drops features left without an incoming or outgoing edge. The replacement score is
the share of the tokens' and errors' influence that the tokens hold (1: every path from input to
output runs through features); the completeness score is the influence-weighted share of each node's
input that does not come from error nodes.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench.runs.results import load_arrays, save_arrays

FEATURE, ERROR, TOKEN, TARGET = "feature", "error", "token", "target"  # the node kinds, in node order


@dataclass
class TargetInfo:
    """One explained target: a logit (``token`` >= 0) or a direction (``token`` -1).

    Attributes:
        label: Its name.
        token: The logit's token id; -1 for a direction.
        weight: Its probability (logits), or 1 shared by the directions.
        value: Its value on the prompt (demeaned logit, or the projection on the direction).
    """

    label: str
    token: int
    weight: float
    value: float


@dataclass
class Pruned:
    """What pruning keeps: node and edge masks, and each node's influence.

    Attributes:
        nodes: ``[n]`` bool: the nodes kept.
        edges: ``[n, n]`` bool, like the adjacency (target, source): the edges kept.
        cumulative: ``[n]``: each node's cumulative influence share (the share of total influence
            held by it and every node more influential than it).
        influence: ``[n]``: each node's influence on the targets.
    """

    nodes: np.ndarray
    edges: np.ndarray
    cumulative: np.ndarray
    influence: np.ndarray


@dataclass
class Graph:
    """The attribution graph of one prompt: the nodes (see the module docstring) and their edges.

    Attributes:
        prompt: The prompt's text.
        tokens: Its token ids, BOS first.
        token_strings: Each token as text.
        n_layers: The model's layers.
        features: ``[n_features, 3]`` int: each feature node's layer, position and feature index.
        activations: ``[n_features]``: their activations.
        error_norms: ``[n_layers, n_pos]``: the norm of each error node's vector.
        targets: What the graph explains.
        adjacency: ``[n, n]`` float32: rows are the targets of edges, columns their sources.
        meta: Model, transcoder, settings, the share of direct effect left out (``unexplained``).
    """

    prompt: str
    tokens: list[int]
    token_strings: list[str]
    n_layers: int
    features: np.ndarray
    activations: np.ndarray
    error_norms: np.ndarray
    targets: list[TargetInfo]
    adjacency: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_pos(self) -> int:
        """The prompt's positions."""
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        """The feature nodes."""
        return len(self.features)

    @property
    def n_nodes(self) -> int:
        """All nodes: features, errors, tokens and targets."""
        return self.n_features + (self.n_layers + 1) * self.n_pos + len(self.targets)

    def span(self, kind: str) -> slice:
        """The node indices of one kind (``"feature"``, ``"error"``, ``"token"``, ``"target"``)."""
        f, e, t = self.n_features, self.n_layers * self.n_pos, self.n_pos
        starts = {FEATURE: (0, f), ERROR: (f, f + e), TOKEN: (f + e, f + e + t), TARGET: (f + e + t, self.n_nodes)}
        return slice(*starts[kind])

    def kind_of(self, node: int) -> str:
        """The kind of node ``node``."""
        return next(k for k in (FEATURE, ERROR, TOKEN, TARGET) if self.span(k).start <= node < self.span(k).stop)

    def describe(self, node: int) -> dict:
        """Where a node sits: kind, layer (-1: tokens; ``n_layers``: targets), position, feature or token."""
        kind = self.kind_of(node)
        i = node - self.span(kind).start
        if kind == FEATURE:
            layer, pos, feature = (int(x) for x in self.features[i])
            return {
                "kind": kind,
                "layer": layer,
                "position": pos,
                "index": feature,
                "activation": float(self.activations[i]),
            }
        if kind == ERROR:
            layer, pos = divmod(i, self.n_pos)
            return {
                "kind": kind,
                "layer": layer,
                "position": pos,
                "index": -1,
                "activation": float(self.error_norms[layer, pos]),
            }
        if kind == TOKEN:
            return {"kind": kind, "layer": -1, "position": i, "index": self.tokens[i], "activation": 0.0}
        target = self.targets[i]
        return {
            "kind": kind,
            "layer": self.n_layers,
            "position": self.n_pos - 1,
            "index": target.token,
            "activation": target.value,
            "label": target.label,
        }

    def target_weights(self) -> np.ndarray:
        """``[n]``: each target's weight at its node, zero elsewhere."""
        weights = np.zeros(self.n_nodes)
        weights[self.span(TARGET)] = [t.weight for t in self.targets]
        return weights

    def influence(self) -> np.ndarray:
        """Each node's influence on the targets (0 for the targets themselves)."""
        return influence(normalized(self.adjacency), self.target_weights())

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
        """The nodes and edges that hold the stated shares of influence (module docstring)."""
        return prune(self, node_threshold, edge_threshold)

    def scores(self) -> tuple[float, float]:
        """``(replacement, completeness)``: how much of the computation runs through features."""
        A = normalized(self.adjacency)
        weights = self.target_weights()
        node = influence(A, weights)
        errors, tokens = self.span(ERROR), self.span(TOKEN)
        err, tok = node[errors].sum(), node[tokens].sum()
        replacement = float(tok / (tok + err)) if tok + err > 0 else float("nan")
        non_error = 1 - A[:, errors].sum(1)
        output = node + weights
        return replacement, float((non_error * output).sum() / output.sum())

    def feature_sets(self, mask: np.ndarray | None = None) -> list[set[int]]:
        """Per layer, the indices of the graph's features (those kept by ``mask``, a node mask), any position."""
        keep = np.ones(self.n_features, bool) if mask is None else mask[self.span(FEATURE)]
        sets: list[set[int]] = [set() for _ in range(self.n_layers)]
        for layer, _, feature in self.features[keep]:
            sets[int(layer)].add(int(feature))
        return sets

    def subgraph(self, pruned: Pruned, max_edges: int = 400) -> tuple[Graph, Pruned]:
        """The kept features only, with the ``max_edges`` strongest kept edges.

        Every error, token and target node stays, for the layout. Small enough to keep in a result
        for its figure.
        """
        keep = np.concatenate(
            [np.nonzero(pruned.nodes[self.span(FEATURE)])[0], np.arange(self.n_features, self.n_nodes)]
        )
        edges = pruned.edges[np.ix_(keep, keep)]
        weights = np.where(edges, self.adjacency[np.ix_(keep, keep)], 0.0)
        if edges.sum() > max_edges:
            cut = np.sort(np.abs(weights[edges]))[-max_edges]
            edges &= np.abs(weights) >= cut
        n_kept = int(pruned.nodes[self.span(FEATURE)].sum())
        small = Graph(
            self.prompt,
            self.tokens,
            self.token_strings,
            self.n_layers,
            self.features[keep[:n_kept]],
            self.activations[keep[:n_kept]],
            self.error_norms,
            self.targets,
            np.where(edges, weights, 0.0).astype(np.float32),
            self.meta,
        )
        return small, Pruned(pruned.nodes[keep], edges, pruned.cumulative[keep], pruned.influence[keep])

    def to_dict(self) -> dict:
        """Plain data (the adjacency as ``[target, source, weight]`` triples of its non-zero entries)."""
        t, s = np.nonzero(self.adjacency)
        return {
            "prompt": self.prompt,
            "tokens": self.tokens,
            "token_strings": self.token_strings,
            "n_layers": self.n_layers,
            "features": self.features.tolist(),
            "activations": self.activations.tolist(),
            "error_norms": self.error_norms.tolist(),
            "targets": [asdict(x) for x in self.targets],
            "edges": [[int(a), int(b), float(self.adjacency[a, b])] for a, b in zip(t, s)],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Graph:
        """The graph [`to_dict`][workbench.clt.graphs.graph.Graph.to_dict] made."""
        graph = cls(
            data["prompt"],
            data["tokens"],
            data["token_strings"],
            data["n_layers"],
            np.array(data["features"], dtype=np.int64).reshape(-1, 3),
            np.array(data["activations"]),
            np.array(data["error_norms"]),
            [TargetInfo(**t) for t in data["targets"]],
            np.zeros((0, 0), np.float32),
            data["meta"],
        )
        graph.adjacency = np.zeros((graph.n_nodes, graph.n_nodes), np.float32)
        for a, b, w in data["edges"]:
            graph.adjacency[a, b] = w
        return graph

    def save(self, folder: Path) -> Path:
        """``graph.json`` (everything small) and ``graph.npz`` (the arrays) in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_arrays(
            folder / "graph.npz",
            {
                "features": self.features,
                "activations": self.activations,
                "error_norms": self.error_norms,
                "adjacency": self.adjacency,
            },
        )
        small = {
            "prompt": self.prompt,
            "tokens": self.tokens,
            "token_strings": self.token_strings,
            "n_layers": self.n_layers,
            "targets": [asdict(t) for t in self.targets],
            "meta": self.meta,
        }
        (folder / "graph.json").write_text(json.dumps(small, ensure_ascii=False, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> Graph:
        """The graph [`save`][workbench.clt.graphs.graph.Graph.save] wrote in ``folder``."""
        folder = Path(folder)
        small = json.loads((folder / "graph.json").read_text(encoding="utf-8"))
        arrays = load_arrays(folder / "graph.npz")
        return cls(
            small["prompt"],
            small["tokens"],
            small["token_strings"],
            small["n_layers"],
            arrays["features"],
            arrays["activations"],
            arrays["error_norms"],
            [TargetInfo(**t) for t in small["targets"]],
            arrays["adjacency"],
            small["meta"],
        )


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Absolute values, each row divided by its sum (rows of zeros stay zero)."""
    a = np.abs(matrix.astype(np.float64))
    return a / np.maximum(a.sum(1, keepdims=True), 1e-10)


def influence(A: np.ndarray, weights: np.ndarray, max_steps: int = 1000) -> np.ndarray:
    """``weights @ (A + A^2 + ...)``: the graph is acyclic, so the series ends."""
    current = weights @ A
    total = current.copy()
    for _ in range(max_steps):
        if not current.any():
            return total
        current = current @ A
        total += current
    raise RuntimeError("Influence did not converge: the graph has a cycle.")


def threshold_of(scores: np.ndarray, share: float) -> float:
    """The smallest score among the top scores that together hold ``share`` of the total."""
    ordered = np.sort(scores.ravel())[::-1]
    total = ordered.sum()
    if total <= 0:
        return float(ordered[0]) if len(ordered) else 0.0
    index = int(np.searchsorted(np.cumsum(ordered) / total, share))
    return float(ordered[min(index, len(ordered) - 1)])


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Keep the nodes, then the edges, that hold the stated shares of influence.

    Tokens and targets are always kept; features and errors without an outgoing kept edge, and
    features without an incoming one, are dropped (repeatedly, until nothing changes).

    Raises:
        ValueError: A threshold outside ``[0, 1]``.
    """
    for name, value in (("node", node_threshold), ("edge", edge_threshold)):
        if not 0 <= value <= 1:
            raise ValueError(f"The {name} threshold is a share in [0, 1]; got {value}.")
    weights = graph.target_weights()
    node_influence = influence(normalized(graph.adjacency), weights)
    nodes = node_influence >= threshold_of(node_influence, node_threshold)
    fixed = graph.span(TOKEN).start  # tokens and targets from here on
    nodes[fixed:] = True
    pruned = graph.adjacency * nodes[:, None] * nodes[None, :]
    A = normalized(pruned)
    edge_scores = A * (influence(A, weights) + weights)[:, None]
    edges = edge_scores >= threshold_of(edge_scores, edge_threshold)
    edges &= pruned != 0
    n_f = graph.n_features
    while True:
        before = nodes.copy()
        edges &= nodes[:, None] & nodes[None, :]
        nodes[:fixed] &= edges[:, :fixed].any(0)  # something kept reads it
        nodes[:n_f] &= edges[:n_f].any(1)  # it reads something kept
        if (nodes == before).all():
            break
    order = np.argsort(-node_influence, kind="stable")
    total = node_influence.sum()
    cumulative = np.zeros_like(node_influence)
    cumulative[order] = np.cumsum(node_influence[order]) / (total if total > 0 else 1.0)
    return Pruned(nodes, edges, cumulative, node_influence)


def jaccard(a: AbstractSet[Hashable], b: AbstractSet[Hashable]) -> float:
    """``|a & b| / |a | b|`` (NaN when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


__all__ = [
    "ERROR",
    "FEATURE",
    "Graph",
    "Pruned",
    "TARGET",
    "TOKEN",
    "TargetInfo",
    "influence",
    "jaccard",
    "normalized",
    "prune",
    "threshold_of",
]
