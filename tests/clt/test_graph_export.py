"""A real attribution graph (tiny model, tiny transcoder, float64) exported to circuit-tracer's graph
JSON, with a plain transcoder and a skip transcoder (its skip is no node: the same format): the file
holds the format's exact field list with its types, round-trips, carries the kept edges' direct
effects, names a direction target by the documented extension, and a broken file is refused by the
field's name. Also the plotly view (one marker per kept node, labels in the hover)
and the top tokens of a feature's decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import spread_clt

from workbench.clt.graphs.attribution import attribute, logit_target, mean_unembedding
from workbench.clt.graphs.export import (
    VIEWER_INDEX,
    parse_logit_label,
    read_circuit_tracer,
    read_viewer_folder,
    to_circuit_tracer,
    top_tokens,
    write_circuit_tracer,
)
from workbench.clt.graphs.graph import ERROR, FEATURE, TARGET, TOKEN, Graph, Pruned
from workbench.clt.graphs.view import graph_figure
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.errors import WorkbenchError
from workbench.models.loading import tiny_model

L, D, F = 2, 64, 48
THRESHOLD = 0.8
# The format's node fields and their JSON types (None: null allowed).
NODE_TYPES = {
    "node_id": (str,),
    "feature": (int,),
    "layer": (str,),
    "ctx_idx": (int,),
    "feature_type": (str,),
    "token_prob": (float,),
    "is_target_logit": (bool,),
    "run_idx": (int,),
    "reverse_ctx_idx": (int,),
    "jsNodeId": (str,),
    "clerp": (str,),
    "influence": (float, type(None)),
    "activation": (float, type(None)),
}
FEATURE_TYPES = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}


def _clt(seed: int = 3, skip: bool = False) -> CrossLayerTranscoder:
    clt = spread_clt(L, D, F, seed, b_dec=True, skip=skip)
    if clt.W_skip is not None:  # a skip transcoder's graph: the skip is no node, the format is the same
        with torch.no_grad():
            clt.W_skip.copy_(torch.randn(L, D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
            clt.W_skip.div_(D**0.5)
    return clt


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "skip"])
def setup(request):
    model = tiny_model("tiny").to(torch.float64)
    clt = _clt(skip=request.param)
    tokens = torch.tensor([0, 72, 101, 108, 108, 111, 32, 119])
    targets = [logit_target(model, 7, 0.6), mean_unembedding(model, [1, 2, 3], "abc")]
    graph = attribute(model, clt, tokens, targets, batch=7, prompt="Hello w")
    pruned = graph.prune(THRESHOLD, 0.98)
    assert pruned.nodes[graph.span(FEATURE)].any() and pruned.edges.any()
    clerps = {int(np.nonzero(pruned.nodes)[0][0]): "the first kept feature"}
    data = to_circuit_tracer(graph, pruned, "hello-graph", "tiny-clt", THRESHOLD, clerps)
    return model, clt, graph, pruned, clerps, data


def _node_id(graph: Graph, node: int) -> str:
    """The format's node id of ``node``, written out from the documented grammar."""
    d, last, top = graph.describe(node), graph.n_pos - 1, graph.n_layers + 1
    i = node - graph.span(d["kind"]).start
    return {
        FEATURE: lambda: f"{d['layer']}_{d['index']}_{d['position']}",
        ERROR: lambda: f"{d['layer']}_-1_{d['position']}",
        TOKEN: lambda: f"E_{graph.tokens[i]}_{i}",
        TARGET: lambda: f"{top}_{d['index'] if d['index'] >= 0 else -(i + 1)}_{last}",
    }[d["kind"]]()


def _index(graph: Graph) -> dict[str, int]:
    return {_node_id(graph, n): n for n in range(graph.n_nodes)}


def test_the_file_has_the_formats_fields_and_types(setup):
    *_, graph, pruned, _, data = setup
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    assert data["metadata"] == {
        "slug": "hello-graph",
        "scan": "tiny-clt",
        "transcoder_list": [],
        "prompt_tokens": graph.token_strings,
        "prompt": "Hello w",
        "node_threshold": THRESHOLD,
        "schema_version": 1,
    }
    assert data["qParams"] == {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    for node in data["nodes"]:
        assert list(node) == list(NODE_TYPES)
        for name, types in NODE_TYPES.items():
            assert type(node[name]) in types, (name, node)
        assert node["run_idx"] == 0 and node["reverse_ctx_idx"] == 0
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    assert {n["feature_type"] for n in data["nodes"]} <= FEATURE_TYPES
    assert {"embedding", "logit", "cross layer transcoder"} <= {n["feature_type"] for n in data["nodes"]}
    for link in data["links"]:
        assert set(link) == {"source", "target", "weight"} and type(link["weight"]) is float
        assert link["source"] in ids and link["target"] in ids
    assert [n["node_id"] for n in data["nodes"] if n["is_target_logit"]] == [f"{L + 1}_7_{graph.n_pos - 1}"]


def test_node_ids_follow_the_grammar(setup):
    *_, graph, pruned, clerps, data = setup
    by_id = {n["node_id"]: n for n in data["nodes"]}
    index = _index(graph)
    for node_id, record in by_id.items():
        n = index[node_id]
        d = graph.describe(n)
        assert record["influence"] == (None if d["kind"] == TARGET else float(pruned.cumulative[n]))
        if d["kind"] == FEATURE:
            layer, f = d["layer"], d["index"]
            assert record["feature"] == (layer + f) * (layer + f + 1) // 2 + f
            assert record["jsNodeId"] == f"{layer}_{f}-0" and record["layer"] == str(layer)
            assert record["activation"] == d["activation"] and record["ctx_idx"] == d["position"]
            assert record["clerp"] == clerps.get(n, "")
        elif d["kind"] == ERROR:
            assert record["feature"] == -1 and record["jsNodeId"] == f"{d['layer']}_-1-{d['position']}"
            assert record["activation"] is None
        elif d["kind"] == TOKEN:
            assert record["feature"] == d["position"] and record["layer"] == "E"
            assert record["jsNodeId"] == f"E_{d['index']}-{d['position']}"
    assert "the first kept feature" in {n["clerp"] for n in data["nodes"]}
    assert sum(n["feature_type"] == "embedding" for n in data["nodes"]) == graph.n_pos  # tokens always stay
    last = graph.n_pos - 1
    logit, direction = by_id[f"{L + 1}_7_{last}"], by_id[f"{L + 1}_-2_{last}"]
    assert logit["feature"] == 7 and logit["layer"] == str(L + 1) and logit["ctx_idx"] == last
    assert logit["token_prob"] == 0.6 and logit["jsNodeId"] == f"L_7-{last}"
    assert logit["clerp"] == f'Output "{graph.targets[0].label}" (p=0.600)'
    assert direction["feature"] == -2 and direction["feature_type"] == "logit" and direction["token_prob"] == 1.0
    assert direction["jsNodeId"] == f"L_-2-{last}" and direction["clerp"] == 'Direction "abc" (p=1.000)'
    assert not direction["is_target_logit"]


def test_round_trip_and_link_weights(setup, tmp_path):
    *_, graph, pruned, clerps, data = setup
    path = write_circuit_tracer(
        graph, pruned, tmp_path / "out" / "hello-graph.json", "hello-graph", "tiny-clt", THRESHOLD, clerps
    )
    assert read_circuit_tracer(path) == data
    index = _index(graph)
    pairs = set()
    for link in data["links"]:
        t, s = index[link["target"]], index[link["source"]]
        assert pruned.edges[t, s] and link["weight"] == float(graph.adjacency[t, s])
        pairs.add((t, s))
    kept = pruned.edges & pruned.nodes[:, None] & pruned.nodes[None, :]
    assert pairs == set(zip(*(a.tolist() for a in np.nonzero(kept)))) and len(pairs) == len(data["links"])


def test_the_export_folder_reads_as_the_viewer_reads_it(setup, tmp_path):
    """circuit-tracer's viewer lists data/graph-metadata.json's graphs, fetches {slug}.json for the
    chosen one, and parses each output label for its token and (p=...): every step resolves."""
    *_, graph, pruned, clerps, data = setup
    out = tmp_path / "graphs"
    for slug in ("first", "second", "first"):  # a graph written again replaces its entry
        write_circuit_tracer(graph, pruned, out / f"{slug}.json", slug, "tiny-clt", THRESHOLD, clerps)
    index = json.loads((out / VIEWER_INDEX).read_text(encoding="utf-8"))
    assert [g["slug"] for g in index["graphs"]] == ["second", "first"]
    assert index["graphs"][1] == {**data["metadata"], "slug": "first"}
    graphs = read_viewer_folder(out)
    assert set(graphs) == {"first", "second"}
    labels = [parse_logit_label(n["clerp"]) for n in graphs["first"]["nodes"] if n["feature_type"] == "logit"]
    assert labels == [(graph.targets[0].label, 0.6), ("abc", 1.0)]
    with pytest.raises(WorkbenchError, match="name the file after the slug"):
        write_circuit_tracer(graph, pruned, out / "other.json", "third", "tiny-clt", THRESHOLD)
    (out / "second.json").unlink()
    with pytest.raises(WorkbenchError, match="second.json is missing"):
        read_viewer_folder(out)
    with pytest.raises(WorkbenchError, match="does not parse"):
        parse_logit_label("Direction abc")


def test_kept_features_are_the_pruned_ones_with_an_edge(setup):
    *_, graph, pruned, _, data = setup
    edges = pruned.edges
    for kind, name in ((FEATURE, "cross layer transcoder"), (ERROR, "mlp reconstruction error")):
        span = range(graph.span(kind).start, graph.span(kind).stop)
        expected = {_node_id(graph, n) for n in span if pruned.nodes[n] and (edges[n].any() or edges[:, n].any())}
        assert {n["node_id"] for n in data["nodes"] if n["feature_type"] == name} == expected
    assert any(n["feature_type"] == "cross layer transcoder" for n in data["nodes"])


def test_kept_nodes_without_a_kept_link_are_left_out(setup):
    *_, graph, pruned, _, data = setup
    spans = [graph.span(kind) for kind in (FEATURE, ERROR)]
    lone = [span.start + int(np.nonzero(~pruned.nodes[span])[0][0]) for span in spans]
    nodes = pruned.nodes.copy()
    nodes[lone] = True  # kept, but no kept edge touches them
    widened = Pruned(nodes, pruned.edges, pruned.cumulative, pruned.influence)
    assert to_circuit_tracer(graph, widened, "hello-graph", "tiny-clt", THRESHOLD, setup[4]) == data


@pytest.mark.parametrize(
    "damage, field",
    [
        (lambda d: d["nodes"][0].pop("layer"), "layer"),
        (lambda d: d.pop("links"), "links"),
        (lambda d: d["nodes"][-1].update(feature="7"), "feature"),
        (lambda d: d["nodes"][0].update(is_target_logit=1), "is_target_logit"),
        (lambda d: d["metadata"].pop("prompt_tokens"), "prompt_tokens"),
        (
            lambda d: d["links"].append({"source": "nowhere", "target": d["nodes"][0]["node_id"], "weight": 1.0}),
            "nowhere",
        ),
    ],
)
def test_a_broken_file_is_refused_by_field(setup, tmp_path, damage, field):
    data = json.loads(json.dumps(setup[-1]))
    damage(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(WorkbenchError, match=field):
        read_circuit_tracer(path)


def test_graph_figure_draws_every_kept_node(setup):
    *_, graph, pruned, _, _ = setup
    features = [n for n in range(graph.n_features) if pruned.nodes[n]]
    labels = {n: f"label-{n}-tokens" for n in features}
    fig = graph_figure(graph, pruned, labels, title="hello", max_edges=5)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == int(pruned.nodes.sum())
    hovers = "\n".join(h for t in markers for h in t.hovertext)
    assert all(label in hovers for label in labels.values())
    lines = [t for t in fig.data if t.mode == "lines"]
    assert 0 < sum(len(t.x) // 3 for t in lines) <= 5
    assert {t.legendgroup for t in lines} <= {"positive", "negative"}
    assert list(fig.layout.xaxis.ticktext) and len(fig.layout.xaxis.ticktext) == graph.n_pos
    assert fig.layout.yaxis.ticktext[0] == "emb" and fig.layout.yaxis.ticktext[-1] == "logit"


def test_top_tokens_is_the_summed_decoder_through_the_unembedding(setup):
    model, clt, graph, *_ = setup
    rows = [int(np.nonzero(graph.features[:, 0] == layer)[0][0]) for layer in range(L)]
    got = top_tokens(model, clt, graph.features[rows], k=4)
    assert len(got) == L
    for row, text in zip(rows, got):
        layer, _, f = (int(x) for x in graph.features[row])
        with torch.no_grad():
            vector = sum(clt.W_dec[layer][k][f] / clt.out_scale[layer + k] for k in range(L - layer))
            ids = torch.topk(vector @ model.W_U, 4).indices.tolist()
        assert text == " ".join(model.tokenizer.decode([t]) for t in ids)
