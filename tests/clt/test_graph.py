"""Attribution graphs held to their definition on tiny models with a transcoder (float64): every
node's value is its bias plus the sum of its direct effects (completeness, with error nodes); each
edge is the effect of perturbing its source on the frozen replacement model; pruning keeps the
stated share of influence; frozen patterns pass no gradient; bad input is refused by name."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import spread_clt

from workbench.clt.graphs.attribution import (
    attribute,
    completeness_error,
    logit_target,
    logit_targets,
    mean_unembedding,
    token_target,
)
from workbench.clt.graphs.graph import ERROR, FEATURE, TARGET, TOKEN, Graph, jaccard, threshold_of
from workbench.clt.graphs.local_replacement import frozen_forward, read_prompt
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.errors import WorkbenchError
from workbench.models.loading import tiny_model

L, D, F = 2, 64, 48


def _clt(seed: int = 3) -> CrossLayerTranscoder:
    return spread_clt(L, D, F, seed, b_dec=True)


@pytest.fixture(scope="module", params=["tiny", "tiny-gated"])
def setup(request):
    model = tiny_model(request.param).to(torch.float64)
    clt = _clt()
    tokens = torch.tensor([0, 72, 101, 108, 108, 111, 32, 119])
    graph = attribute(model, clt, tokens, probability=0.9, max_logits=3, batch=7)
    return model, clt, tokens, graph


def _writes_with(state, extra=None):
    writes = [state.writes[l][None].clone() for l in range(L)]
    if extra is not None:
        for l, v in extra.items():
            writes[l] = writes[l] + v
    return writes


def _values(model, state, graph: Graph, start, writes) -> np.ndarray:
    """Every feature's pre-activation and every target's value, on the frozen model."""
    mlp_in, final = frozen_forward(model, state, start, writes)
    clt = graph.meta["_clt"]
    out = []
    for layer, pos, feature in graph.features:
        out.append(
            float(
                mlp_in[layer][0, pos] * clt.in_scale[layer] @ clt.W_enc[layer, :, feature] + clt.b_enc[layer, feature]
            )
        )
    W_U = model.W_U
    for t in graph.targets:
        out.append(float(final[0, -1] @ (W_U[:, t.token] - W_U.mean(1))))
    return np.array(out)


def _rows(graph: Graph) -> np.ndarray:
    return np.concatenate([np.arange(graph.n_features), np.arange(graph.span(TARGET).start, graph.n_nodes)])


def test_graph_has_every_kind_of_node(setup):
    model, clt, tokens, graph = setup
    assert graph.n_features > 10 and graph.meta["unexplained"] == 0
    assert (graph.features[:, 1] > 0).all()  # no features at BOS
    assert graph.n_nodes == graph.n_features + (L + 1) * len(tokens) + len(graph.targets)
    assert 1 <= len(graph.targets) <= 3
    assert sum(t.weight for t in graph.targets) >= 0.9 or len(graph.targets) == 3


def test_completeness_bias_plus_direct_effects_is_the_value(setup):
    model, clt, tokens, graph = setup
    state = read_prompt(model, clt, tokens)
    graph.meta["_clt"] = clt
    with torch.no_grad():
        actual = _values(model, state, graph, state.start[None], _writes_with(state))
        zero_writes = [(clt.b_dec[l] / clt.out_scale[l]).expand(1, len(tokens), D).clone() for l in range(L)]
        bias = _values(model, state, graph, torch.zeros_like(state.start[None]), zero_writes)
    # the frozen model reproduces the model: feature pre-activations are their activations
    np.testing.assert_allclose(actual[: graph.n_features], graph.activations, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(actual[graph.n_features :], [t.value for t in graph.targets], rtol=1e-9, atol=1e-9)
    rows = graph.adjacency.astype(np.float64)[_rows(graph)]
    np.testing.assert_allclose(bias + rows.sum(1), actual, rtol=1e-5, atol=1e-5 * np.abs(actual).max())
    del graph.meta["_clt"]
    # the package's own measure says the same, and sees one wrong edge
    assert completeness_error(model, clt, graph) < 1e-6  # the adjacency is float32
    broken = copy.deepcopy(graph)
    broken.adjacency[graph.span(TARGET).start, 0] += 0.1 * np.abs(actual).max()
    assert completeness_error(model, clt, broken) > 0.05


@pytest.mark.parametrize("kind", [FEATURE, ERROR, TOKEN])
def test_edge_is_the_finite_difference_on_the_frozen_model(setup, kind):
    model, clt, tokens, graph = setup
    state = read_prompt(model, clt, tokens)
    graph.meta["_clt"] = clt
    rng = np.random.default_rng(0)
    span = graph.span(kind)
    sources = rng.choice(np.arange(span.start, span.stop), size=3, replace=False)
    eps = 0.5
    with torch.no_grad():
        base = _values(model, state, graph, state.start[None], _writes_with(state))
        for source in sources:
            start, extra = state.start[None].clone(), {}
            node = graph.describe(int(source))
            if kind == FEATURE:
                layer, pos, feature = (int(x) for x in graph.features[source])
                for k in range(clt.config.targets(layer)):
                    v = torch.zeros(1, len(tokens), D, dtype=torch.float64)
                    v[0, pos] = eps * node["activation"] * clt.W_dec[layer][k][feature] / clt.out_scale[layer + k]
                    extra[layer + k] = v
            elif kind == ERROR:
                v = torch.zeros(1, len(tokens), D, dtype=torch.float64)
                v[0, node["position"]] = eps * state.errors[node["layer"], node["position"]]
                extra[node["layer"]] = v
            else:
                start[0, node["position"]] *= 1 + eps
            moved = _values(model, state, graph, start, _writes_with(state, extra))
            edges = graph.adjacency[_rows(graph), source].astype(np.float64)
            np.testing.assert_allclose(
                (moved - base) / eps, edges, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(edges).max())
            )
    del graph.meta["_clt"]


def test_frozen_patterns_pass_no_gradient(setup):
    model, clt, tokens, _ = setup
    state = read_prompt(model, clt, tokens)
    seen = {}

    def keep(x, hook):
        x.retain_grad()
        seen[hook.name] = x

    start = state.start[None].clone().requires_grad_(True)
    writes = [state.writes[l][None].clone() for l in range(L)]
    name = "blocks.1.attn.hook_attn_scores"
    with model.hooks(fwd_hooks=[(name, keep)]):
        _, final = frozen_forward(model, state, start, writes)
        (final[0, -1] @ model.W_U[:, 7]).backward()
    assert start.grad.abs().sum() > 0  # gradient flows through the residual stream and values
    assert seen[name].grad is None or seen[name].grad.abs().max() == 0  # but not into the patterns
    seen.clear()  # the unfrozen model does pass gradient to the scores
    start = state.start[None].clone().requires_grad_(True)
    with model.hooks(fwd_hooks=[(name, keep), ("blocks.0.hook_resid_pre", lambda x, hook: start)]):
        model(tokens[None])[0, -1, 7].backward()
    assert seen[name].grad.abs().max() > 0


def test_pruning_keeps_the_stated_share_of_influence(setup):
    *_, graph = setup
    influence = graph.influence()
    movable = slice(0, graph.span(TOKEN).start)
    for share in (0.5, 0.8, 0.95):
        pruned = graph.prune(node_threshold=share, edge_threshold=0.98)
        before = influence >= threshold_of(influence, share)
        assert influence[before].sum() >= share * influence.sum() - 1e-9
        assert pruned.nodes[graph.span(TOKEN).start :].all()  # tokens and targets always kept
        assert not (pruned.nodes[movable] & ~before[movable]).any()  # nothing below the threshold is kept
        kept = pruned.edges
        assert not (kept & ~(pruned.nodes[:, None] & pruned.nodes[None, :])).any()
    everything = graph.prune(1.0, 1.0)
    assert everything.nodes[graph.span(TARGET)].all()
    replacement, completeness = graph.scores()
    assert 0 <= replacement <= 1 and 0 <= completeness <= 1


def test_save_load_round_trip(setup, tmp_path):
    *_, graph = setup
    back = Graph.load(graph.save(tmp_path / "g"))
    np.testing.assert_array_equal(back.adjacency, graph.adjacency)
    np.testing.assert_array_equal(back.features, graph.features)
    assert back.targets == graph.targets and back.token_strings == graph.token_strings and back.prompt == graph.prompt
    assert back.scores() == graph.scores()


def test_max_features_visits_by_influence(setup):
    model, clt, tokens, full = setup
    small = attribute(model, clt, tokens, max_features=5, batch=2, probability=0.9, max_logits=3)
    assert small.n_features == 5 and 0 < small.meta["unexplained"] < 1
    # target rows are the same whatever the features visited
    np.testing.assert_allclose(
        small.adjacency[small.span(TARGET), small.span(ERROR).start :],
        full.adjacency[full.span(TARGET), full.span(ERROR).start :],
        rtol=1e-5,
        atol=1e-8,
    )


def test_targets(setup):
    model, clt, tokens, _ = setup
    logits = torch.tensor([0.0] * 250 + [10.0, 8.0, 6.0] + [0.0] * 7, dtype=torch.float64)
    top = logit_targets(model, logits, probability=0.5, max_logits=4)
    assert [t.token for t in top] == [250]
    assert [t.token for t in logit_targets(model, logits, probability=0.9, max_logits=4)] == [250, 251]
    assert [t.token for t in logit_targets(model, logits, probability=0.999, max_logits=2)] == [250, 251]
    direction = mean_unembedding(model, [1, 2, 3], "abc")
    assert direction.token == -1 and direction.weight == 1
    graph = attribute(model, clt, tokens, [direction, logit_target(model, 7)])
    assert [t.label for t in graph.targets][0] == "abc"


def test_bad_input_is_refused(setup):
    model, clt, tokens, _ = setup
    with pytest.raises(WorkbenchError, match="empty"):
        attribute(model, clt, tokens[:1])
    other = CrossLayerTranscoder(CLTConfig(n_layers=3, d_model=D, n_features=4)).double()
    with pytest.raises(WorkbenchError, match="3 layers"):
        attribute(model, other, tokens)
    with pytest.raises(WorkbenchError, match="outside the model's vocabulary"):
        logit_target(model, model.cfg.d_vocab + 5)
    with pytest.raises(WorkbenchError, match="not one"):
        token_target(model, "several tokens")
    with pytest.raises(WorkbenchError, match="context"):
        attribute(model, clt, torch.zeros(model.cfg.n_ctx + 1, dtype=torch.long))


def test_jaccard():
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    assert math.isnan(jaccard(set(), set()))


def test_a_layer_without_features_is_one_error_node_and_completeness_holds():
    """A transcoder of layer 1 only: layer 0 has no feature nodes, its error node is its whole MLP
    output, and every node's value is still its bias plus its direct effects."""
    model = tiny_model("tiny-gated").to(torch.float64)
    clt = spread_clt(L, D, F, 3, b_dec=True, layers=(1,))
    tokens = torch.tensor([0, 72, 101, 108, 108, 111, 32, 119])
    state = read_prompt(model, clt, tokens)
    assert not state.acts[0].any() and state.acts[1].any()
    torch.testing.assert_close(state.errors[0], state.writes[0], rtol=0, atol=0)
    graph = attribute(model, clt, tokens, probability=0.9, max_logits=3, batch=7)
    assert set(graph.features[:, 0].tolist()) == {1}
    assert completeness_error(model, clt, graph) < 1e-6
