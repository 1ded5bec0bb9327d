"""Attribution graphs as circuit-tracer's graph JSON, and the top tokens of features for their labels.

The format is the one circuit-tracer (Anthropic's and Decode's open attribution-graph library)
writes for its graph viewer: one JSON file per pruned graph, read by circuit-tracer's local
frontend (``circuit_tracer.frontend``) and by Neuronpedia's graph viewer. Its field list follows
circuit-tracer's ``frontend/graph_models.py`` (``Metadata``, ``QParams``, ``Node``, ``Link``); the
code here is written from that field list, not copied.

Top level: ``metadata`` (slug, scan, transcoder_list, prompt_tokens, prompt, node_threshold,
schema_version), ``qParams`` (the viewer's initial state: nothing pinned, no supernodes), ``nodes``
and ``links`` (``{source, target, weight}``, node ids; ``weight`` is the direct effect of source on
target, the graph's ``adjacency[target, source]``).

Node ids (``node_id``; ``jsNodeId`` is the viewer's own key), with ``L`` the number of layers:

* feature ``f`` of layer ``l`` at position ``p``: ``"{l}_{f}_{p}"`` (jsNodeId ``"{l}_{f}-0"``);
  ``feature`` is the Cantor pairing of ``(l, f)``, one integer per (layer, feature);
* error node of layer ``l`` at ``p``: ``"{l}_-1_{p}"`` (jsNodeId ``"{l}_-1-{p}"``), feature -1;
* token (embedding) node at ``p`` with vocabulary id ``v``: ``"E_{v}_{p}"`` (jsNodeId ``"E_{v}-{p}"``),
  feature ``p``;
* logit of token ``t`` (at the last position ``p``, layer ``L + 1``): ``"{L+1}_{t}_{p}"`` (jsNodeId
  ``"L_{t}-{p}"``), feature ``t``; the first target is the ``is_target_logit`` one.

Extension (this workbench's, not circuit-tracer's): a graph may explain *directions* (e.g. a
language direction) rather than logits. The ``i``-th target, when it is a direction, has no
vocabulary id, so it takes ``-(i + 1)`` in its place: node id ``"{L+1}_{-(i+1)}_{p}"``, jsNodeId
``"L_{-(i+1)}-{p}"``, feature ``-(i + 1)``, clerp ``'Direction "{label}" (p={weight})'``; it is
still a ``"logit"`` node, so the viewers draw it in the output row, and its label parses as a
logit's does (the viewer reads the text between quotes and the number after ``(p=``). Targets carry
no influence or activation (null).

**The viewer's folder.** circuit-tracer's local server serves one folder: ``graph-metadata.json``
(``{"graphs": [metadata, ...]}``, one entry per graph, the graph file's ``metadata``) indexes the
graphs, and graph ``slug`` is the file ``{slug}.json`` beside it.
[`write_circuit_tracer`][workbench.clt.graphs.export.write_circuit_tracer] keeps that index up to date (an
entry per slug, replaced when the graph is written again), so
``circuit_tracer.frontend.local_server.serve(folder)`` shows every exported graph;
[`read_viewer_folder`][workbench.clt.graphs.export.read_viewer_folder] reads a folder the way the viewer
does, each file checked against the format's schema ([`workbench.clt.graphs.schema`][workbench.clt.graphs.schema]).

Only the pruned graph is written: the kept nodes, the kept edges between them, and then neither
features nor error nodes that no written link touches (tokens and targets always stay).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from jaxtyping import Float

from workbench.clt.graphs.graph import ERROR, FEATURE, TARGET, TOKEN, Graph, Pruned
from workbench.clt.graphs.schema import validate_circuit_tracer
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.models.model import Model

SCHEMA_VERSION = 1
VIEWER_INDEX = "graph-metadata.json"
FEATURE_TYPES = {
    FEATURE: "cross layer transcoder",
    ERROR: "mlp reconstruction error",
    TOKEN: "embedding",
    TARGET: "logit",
}


def cantor(layer: int, feature: int) -> int:
    """circuit-tracer's one integer per (layer, feature): the Cantor pairing of the two."""
    return (layer + feature) * (layer + feature + 1) // 2 + feature


def _node(
    node_id: str,
    feature: int,
    layer: str,
    ctx_idx: int,
    kind: str,
    js: str,
    clerp: str = "",
    influence: float | None = None,
    activation: float | None = None,
    token_prob: float = 0.0,
    is_target: bool = False,
) -> dict:
    """One node with every field of the format, in its order, as plain Python values."""
    return {
        "node_id": node_id,
        "feature": int(feature),
        "layer": layer,
        "ctx_idx": int(ctx_idx),
        "feature_type": FEATURE_TYPES[kind],
        "token_prob": float(token_prob),
        "is_target_logit": bool(is_target),
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": clerp,
        "influence": None if influence is None else float(influence),
        "activation": None if activation is None else float(activation),
    }


def node_record(graph: Graph, pruned: Pruned, node: int, clerps: dict[int, str] | None = None) -> dict:
    """The format's record of one node of ``graph`` (see the module docstring for the ids)."""
    clerps = clerps or {}
    kind = graph.kind_of(node)
    i = node - graph.span(kind).start
    influence = float(pruned.cumulative[node])
    if kind == FEATURE:
        layer, pos, f = (int(x) for x in graph.features[i])
        return _node(
            f"{layer}_{f}_{pos}",
            cantor(layer, f),
            str(layer),
            pos,
            kind,
            f"{layer}_{f}-0",
            clerps.get(node, ""),
            influence,
            float(graph.activations[i]),
        )
    if kind == ERROR:
        layer, pos = divmod(i, graph.n_pos)
        return _node(
            f"{layer}_-1_{pos}", -1, str(layer), pos, kind, f"{layer}_-1-{pos}", clerps.get(node, ""), influence
        )
    if kind == TOKEN:
        v = graph.tokens[i]
        return _node(f"E_{v}_{i}", i, "E", i, kind, f"E_{v}-{i}", clerps.get(node, ""), influence)
    return _target_record(graph, i)


def _target_record(graph: Graph, i: int) -> dict:
    """The ``i``-th target as a logit node (a direction takes ``-(i + 1)`` as its token id)."""
    target, layer, pos = graph.targets[i], str(graph.n_layers + 1), graph.n_pos - 1
    if target.token >= 0:
        token, clerp = target.token, f'Output "{target.label}" (p={target.weight:.3f})'
    else:
        token, clerp = -(i + 1), f'Direction "{target.label}" (p={target.weight:.3f})'
    return _node(
        f"{layer}_{token}_{pos}",
        token,
        layer,
        pos,
        TARGET,
        f"L_{token}-{pos}",
        clerp,
        token_prob=float(target.weight),
        is_target=i == 0,
    )


def kept_links(graph: Graph, pruned: Pruned) -> list[tuple[int, int]]:
    """``(target, source)`` node pairs of the kept edges between kept nodes."""
    edges = pruned.edges & pruned.nodes[:, None] & pruned.nodes[None, :]
    return [(int(t), int(s)) for t, s in zip(*np.nonzero(edges))]


def exported_nodes(graph: Graph, pruned: Pruned) -> list[int]:
    """The node indices written: kept nodes, less features and errors that no kept link touches."""
    touched = {n for pair in kept_links(graph, pruned) for n in pair}
    fixed = graph.span(TOKEN).start  # tokens and targets always stay
    return [n for n in np.nonzero(pruned.nodes)[0].tolist() if n >= fixed or n in touched]


def to_circuit_tracer(
    graph: Graph, pruned: Pruned, slug: str, scan: str, node_threshold: float, clerps: dict[int, str] | None = None
) -> dict:
    """The pruned graph in circuit-tracer's graph format (module docstring).

    Args:
        graph: The graph.
        pruned: What its pruning kept.
        slug: The graph's name.
        scan: The model/transcoder pair (Neuronpedia's id for it).
        node_threshold: The pruning's node threshold, recorded.
        clerps: Node index -> its label.
    """
    nodes = exported_nodes(graph, pruned)
    records = {n: node_record(graph, pruned, n, clerps) for n in nodes}
    ids = {n: r["node_id"] for n, r in records.items()}
    links = [
        {"source": ids[s], "target": ids[t], "weight": float(graph.adjacency[t, s])}
        for t, s in kept_links(graph, pruned)
        if s in ids and t in ids
    ]
    metadata = {
        "slug": slug,
        "scan": scan,
        "transcoder_list": [],
        "prompt_tokens": list(graph.token_strings),
        "prompt": graph.prompt,
        "node_threshold": float(node_threshold),
        "schema_version": SCHEMA_VERSION,
    }
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": list(records.values()), "links": links}


def write_circuit_tracer(
    graph: Graph,
    pruned: Pruned,
    path: Path,
    slug: str,
    scan: str,
    node_threshold: float,
    clerps: dict[int, str] | None = None,
) -> Path:
    """Write the graph's JSON to ``path`` and enter it in the folder's viewer index.

    [`to_circuit_tracer`][workbench.clt.graphs.export.to_circuit_tracer]'s JSON (UTF-8, tokens as they
    are); the index is ``graph-metadata.json``. The arguments are that function's, and ``path``,
    which must be named after the slug, as the viewer looks it up.

    Returns:
        The path.

    Raises:
        WorkbenchError: A file not named after the slug.
    """
    path = Path(path)
    if path.stem != slug:
        raise WorkbenchError(
            f"The viewer finds graph {slug!r} as {slug}.json, not {path.name}: name the file after the slug."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_circuit_tracer(graph, pruned, slug, scan, node_threshold, clerps)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    index_graph(path.parent, data["metadata"])
    return path


def index_graph(folder: Path, metadata: dict) -> Path:
    """Enter one graph's metadata in ``folder/graph-metadata.json`` (replacing an entry of the same slug)."""
    index = Path(folder) / VIEWER_INDEX
    graphs = json.loads(index.read_text(encoding="utf-8"))["graphs"] if index.exists() else []
    graphs = [g for g in graphs if g.get("slug") != metadata["slug"]] + [metadata]
    index.write_text(json.dumps({"graphs": graphs}, ensure_ascii=False, indent=1), encoding="utf-8")
    return index


def read_viewer_folder(folder: Path) -> dict[str, dict]:
    """Read an export folder as circuit-tracer's viewer does.

    The index, then ``{slug}.json`` for each entry (validated), then every logit node's label
    parsed for its token and its ``(p=...)`` probability.

    Returns:
        The graphs by slug.

    Raises:
        WorkbenchError: What the viewer would choke on, naming the fix.
    """
    folder = Path(folder)
    index = folder / VIEWER_INDEX
    if not index.exists():
        raise WorkbenchError(
            f"{folder} has no {VIEWER_INDEX}: the viewer would find no graph. Export with write_circuit_tracer."
        )
    graphs = {}
    for entry in json.loads(index.read_text(encoding="utf-8"))["graphs"]:
        path = folder / f"{entry['slug']}.json"
        if not path.exists():
            raise WorkbenchError(f"{VIEWER_INDEX} lists {entry['slug']!r} but {path.name} is missing.")
        data = read_circuit_tracer(path)
        for node in data["nodes"]:
            if node["feature_type"] == FEATURE_TYPES[TARGET]:
                parse_logit_label(node["clerp"])
        graphs[entry["slug"]] = data
    return graphs


def parse_logit_label(clerp: str) -> tuple[str, float]:
    """``(token, probability)`` from an output node's label, parsed as the viewer parses it.

    The text between the first quotes; the number between ``(p=`` and ``)``.
    """
    try:
        return clerp.split('"')[1], float(clerp.split("(p=")[1].split(")")[0])
    except (IndexError, ValueError):
        raise WorkbenchError(
            f"The output label {clerp!r} does not parse as the viewer reads it ('Output \"token\" (p=0.123)')."
        ) from None


def read_circuit_tracer(path: Path) -> dict:
    """Load a graph file in circuit-tracer's format and validate it.

    See [`validate_circuit_tracer`][workbench.clt.graphs.schema.validate_circuit_tracer].
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{path} is not JSON ({e}). Re-export the graph with write_circuit_tracer.") from e
    return validate_circuit_tracer(data)


def decoder_vectors(clt: CrossLayerTranscoder, features: np.ndarray) -> Float[torch.Tensor, "row d_model"]:
    """Each feature's decoders summed over the layers it writes to, in the model's units.

    ``sum_k W_dec[layer][k][f] / out_scale[layer + k]`` for each ``(layer, position, feature)`` row
    of ``features``.
    """
    rows = []
    for layer, _, f in np.asarray(features, dtype=np.int64).reshape(-1, 3):
        layer, f = int(layer), int(f)
        rows.append(sum(clt.W_dec[layer][k][f] / clt.out_scale[layer + k] for k in range(len(clt.W_dec[layer]))))
    return torch.stack(rows) if rows else torch.zeros(0, clt.config.d_model)


@torch.no_grad()
def top_tokens(
    model: Model, clt: CrossLayerTranscoder, features: np.ndarray, k: int = 5, chunk: int = 256
) -> list[str]:
    """A cheap label of what each feature writes (its "output" side): its top tokens.

    For each ``(layer, position, feature)`` row of ``features``, the ``k`` vocabulary tokens its
    summed decoder pushes up most through the unembedding (``decoder @ W_U``), decoded and joined
    with spaces; ``chunk`` rows at a time.
    """
    W_U = model.W_U.detach()
    vectors = decoder_vectors(clt, features).detach()
    out: list[str] = []
    for start in range(0, len(vectors), chunk):
        logits = vectors[start : start + chunk].to(W_U) @ W_U
        for ids in torch.topk(logits, min(k, logits.shape[-1]), dim=-1).indices.tolist():
            out.append(" ".join(_decode(model, t) for t in ids))
    return out


def _decode(model: Model, token: int) -> str:
    """A token's text (its id where the model has no tokenizer)."""
    if model.tokenizer is None:
        return str(token)
    return cast(str, model.tokenizer.decode([token]))  # one sequence of ids decodes to one string


__all__ = [
    "FEATURE_TYPES",
    "SCHEMA_VERSION",
    "VIEWER_INDEX",
    "cantor",
    "decoder_vectors",
    "exported_nodes",
    "index_graph",
    "kept_links",
    "node_record",
    "parse_logit_label",
    "read_circuit_tracer",
    "read_viewer_folder",
    "to_circuit_tracer",
    "top_tokens",
    "write_circuit_tracer",
]
