"""A skip transcoder in the replacement models and attribution graphs, held to literal references.

The skip (``x @ W_skip[l]``, a linear map of layer ``l``'s MLP input) is no graph node: in the
local replacement model it is a linear path through the frozen norm, part of the frozen forward.
On tiny models with a random skip: the local replacement model reproduces the model (the error
nodes are the true MLP output less the decoded features and the skip); every node's value is its
bias plus its direct effects, on every model family; each edge is the finite difference on a frozen
model written out here (with the skip added by hand); the skip changes the edges (so a graph that
ignored it would fail); half precision keeps the writes wide. The replacement model (quality) writes
decoded features plus the skip, against an unrolled literal, and its FVU counts the skip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import spread_clt

from workbench.clt.activations import mlp_io
from workbench.clt.graphs.attribution import attribute, check_hooked, completeness_error
from workbench.clt.graphs.graph import ERROR, FEATURE, TARGET, TOKEN, Graph
from workbench.clt.graphs.local_replacement import PromptState, frozen_forward, read_prompt
from workbench.clt.quality import layer_quality, replacement
from workbench.clt.transcoder import CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.models.families import FAMILIES, save_family
from workbench.models.loading import load_model, tiny_model

L, D, F = 2, 64, 48
TOKENS = torch.tensor([0, 72, 101, 108, 108, 111, 32, 119])


def _skip_clt(d: int = D, n_features: int = F, seed: int = 3, **shape) -> CrossLayerTranscoder:
    """``spread_clt`` with a random skip as large as the MLP outputs (float64)."""
    clt = spread_clt(L, d, n_features, seed, b_dec=True, skip=True, **shape)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        assert clt.W_skip is not None
        clt.W_skip.copy_(torch.randn(L, d, d, generator=g, dtype=torch.float64) / math.sqrt(d))
    clt.clear_uncovered()
    return clt


def _skip(clt: CrossLayerTranscoder) -> torch.Tensor:
    assert clt.W_skip is not None
    return clt.W_skip


@pytest.fixture(scope="module", params=["tiny", "tiny-gated"])
def setup(request):
    model = tiny_model(request.param).to(torch.float64)
    clt = _skip_clt()
    graph = attribute(model, clt, TOKENS, probability=0.9, max_logits=3, batch=7)
    return model, clt, graph, read_prompt(model, clt, TOKENS)


def _literal_values(model, clt, state: PromptState, graph: Graph, start, writes) -> np.ndarray:
    """Every feature's pre-activation and every target's value on a frozen model written out here:
    patterns and norm scales fixed, layer ``l``'s MLP output ``writes[l] + x_l @ W_skip[l]`` with
    ``x_l`` its MLP input in this same pass."""
    x = {}

    def keep(layer):
        def hook(value, hook):
            x[layer] = value

        return hook

    hooks = [(name, lambda v, hook, f=f: f) for name, f in state.frozen.items()]
    hooks += [("blocks.0.hook_resid_pre", lambda v, hook: start)]
    hooks += [(f"blocks.{l}.ln2.hook_normalized", keep(l)) for l in range(L)]
    hooks += [(f"blocks.{l}.hook_mlp_out", lambda v, hook, l=l: writes[l] + x[l] @ _skip(clt)[l]) for l in range(L)]
    with model.hooks(fwd_hooks=hooks):
        final = model.ln_final(model(TOKENS[None], stop_at_layer=L))
    out = [
        float((x[layer][0, pos] * clt.in_scale[layer]) @ clt.W_enc[layer, :, f] + clt.b_enc[layer, f])
        for layer, pos, f in graph.features
    ]
    W_U = model.W_U
    out += [float(final[0, -1] @ (W_U[:, t.token] - W_U.mean(1))) for t in graph.targets]
    return np.array(out)


def _writes(state: PromptState, extra=None) -> list[torch.Tensor]:
    writes = [state.writes[l][None].clone() for l in range(L)]
    for l, v in (extra or {}).items():
        writes[l] = writes[l] + v
    return writes


def _rows(graph: Graph) -> np.ndarray:
    return np.concatenate([np.arange(graph.n_features), np.arange(graph.span(TARGET).start, graph.n_nodes)])


def test_the_local_replacement_model_reproduces_the_model_with_the_skip(setup):
    model, clt, graph, state = setup
    with torch.no_grad():
        _, cache = model.run_with_cache(TOKENS[None])
        for l in range(L):  # error = true output - decoded features - skip of the prompt's own MLP input
            x, true = cache[mlp_in_hook(l)][0], cache[mlp_out_hook(l)][0]
            decoded = clt.decode_layer(list(state.acts[: l + 1]), l)
            torch.testing.assert_close(state.errors[l], true - decoded - x @ _skip(clt)[l], rtol=0, atol=1e-12)
            torch.testing.assert_close(state.writes[l], true - x @ _skip(clt)[l], rtol=0, atol=1e-12)
        mlp_in, final = frozen_forward(model, state, state.start[None], _writes(state))
        actual = _literal_values(model, clt, state, graph, state.start[None], _writes(state))
    torch.testing.assert_close(final[0], state.final, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack([m[0] for m in mlp_in]), state.mlp_in, rtol=0, atol=1e-12)
    assert graph.meta["skip"] is True
    np.testing.assert_allclose(actual[: graph.n_features], graph.activations, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(actual[graph.n_features :], [t.value for t in graph.targets], rtol=1e-9, atol=1e-9)


def test_completeness_against_the_literal_frozen_model(setup):
    model, clt, graph, state = setup
    with torch.no_grad():
        actual = _literal_values(model, clt, state, graph, state.start[None], _writes(state))
        decoder_bias = [(clt.b_dec[l] / clt.out_scale[l]).expand(1, len(TOKENS), D).clone() for l in range(L)]
        bias = _literal_values(model, clt, state, graph, torch.zeros_like(state.start[None]), decoder_bias)
    rows = graph.adjacency.astype(np.float64)[_rows(graph)]
    np.testing.assert_allclose(bias + rows.sum(1), actual, rtol=1e-5, atol=1e-5 * np.abs(actual).max())
    assert completeness_error(model, clt, graph) < 1e-6  # the adjacency is float32


@pytest.mark.parametrize("kind", [FEATURE, ERROR, TOKEN])
def test_edge_is_the_finite_difference_on_the_literal_frozen_model(setup, kind):
    model, clt, graph, state = setup
    rng = np.random.default_rng(1)
    span = graph.span(kind)
    eps = 0.5
    with torch.no_grad():
        base = _literal_values(model, clt, state, graph, state.start[None], _writes(state))
        for source in rng.choice(np.arange(span.start, span.stop), size=3, replace=False):
            start, extra, node = state.start[None].clone(), {}, graph.describe(int(source))
            if kind == FEATURE:
                layer, pos, feature = (int(x) for x in graph.features[source])
                for k in range(clt.config.targets(layer)):
                    v = torch.zeros(1, len(TOKENS), D, dtype=torch.float64)
                    v[0, pos] = eps * node["activation"] * clt.W_dec[layer][k][feature] / clt.out_scale[layer + k]
                    extra[layer + k] = v
            elif kind == ERROR:
                v = torch.zeros(1, len(TOKENS), D, dtype=torch.float64)
                v[0, node["position"]] = eps * state.errors[node["layer"], node["position"]]
                extra[node["layer"]] = v
            else:
                start[0, node["position"]] *= 1 + eps
            moved = _literal_values(model, clt, state, graph, start, _writes(state, extra))
            edges = graph.adjacency[_rows(graph), source].astype(np.float64)
            np.testing.assert_allclose(
                (moved - base) / eps, edges, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(edges).max())
            )


def test_the_skip_changes_the_edges(setup):
    """The same transcoder without its skip reads the same features, but its edges into the
    targets differ: a graph that ignored the skip would fail the finite differences above."""
    model, _, graph, _ = setup
    plain = attribute(model, spread_clt(L, D, F, 3, b_dec=True), TOKENS, probability=0.9, max_logits=3, batch=7)
    np.testing.assert_array_equal(plain.features, graph.features)
    assert plain.meta["skip"] is False
    ours, theirs = graph.adjacency[graph.span(TARGET)], plain.adjacency[plain.span(TARGET)]
    assert [t.token for t in plain.targets] == [t.token for t in graph.targets]
    assert np.abs(ours - theirs).max() > 0.1 * np.abs(ours).max()


def test_a_layer_without_features_has_no_skip():
    model = tiny_model("tiny-gated").to(torch.float64)
    clt = _skip_clt(layers=(1,))
    assert not _skip(clt)[0].any() and _skip(clt)[1].any()
    state = read_prompt(model, clt, TOKENS)
    torch.testing.assert_close(state.errors[0], state.writes[0], rtol=0, atol=0)  # the whole MLP output
    graph = attribute(model, clt, TOKENS, probability=0.9, max_logits=3, batch=7)
    assert set(graph.features[:, 0].tolist()) == {1}
    assert completeness_error(model, clt, graph) < 1e-6


@pytest.mark.parametrize("name", list(FAMILIES))
def test_skip_graphs_are_complete_on_every_family(name, tmp_path):
    save_family(name, tmp_path)
    model = check_hooked(load_model(str(tmp_path)))
    clt = _skip_clt(model.cfg.d_model, n_features=16).float()
    tokens = model.to_tokens("Im Anfang")[0]
    graph = attribute(model, clt, tokens, max_logits=3, batch=32)
    state = read_prompt(model, clt, tokens)
    with torch.no_grad():  # the frozen model with the skip reproduces the model
        _, final = frozen_forward(model, state, state.start[None], [w[None] for w in state.writes])
    torch.testing.assert_close(final[0], state.final, rtol=1e-5, atol=1e-5)
    assert graph.n_features > 0 and completeness_error(model, clt, graph) < 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_the_writes_wide(dtype):
    model = tiny_model("tiny-gated", dtype=dtype)
    clt = _skip_clt().float()
    state = read_prompt(model, clt, TOKENS)
    assert state.writes.dtype == torch.float32  # true output - skip, not rounded back to half
    with torch.no_grad():
        _, final = frozen_forward(model, state, state.start[None], [w[None] for w in state.writes])
    torch.testing.assert_close(final[0].float(), state.final, rtol=0, atol=0)  # writes + skip rounds to the output
    graph = attribute(model, clt, TOKENS, probability=0.9, max_logits=3, batch=7)
    assert completeness_error(model, clt, graph) < 0.05


def test_the_replacement_model_writes_features_plus_skip_against_an_unrolled_literal():
    """Fix the MLP outputs one layer at a time, rerunning the model after each, layer ``l`` written
    as its decoded features (summed by hand) plus ``x_l @ W_skip[l]``: the last run's logits are the
    replacement model's."""
    model = tiny_model("tiny").to(torch.float64)
    clt = _skip_clt()
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(5))
    fixed, acts = {}, []
    with torch.no_grad():
        for layer in range(L):
            with model.hooks(fwd_hooks=[(mlp_out_hook(k), lambda out, hook, v=v: v) for k, v in fixed.items()]):
                _, cache = model.run_with_cache(tokens)
            x = cache[mlp_in_hook(layer)]
            pre = (x * clt.in_scale[layer]) @ clt.W_enc[layer] + clt.b_enc[layer]
            acts.append(pre * (pre > clt.threshold[layer]))
            decoded = clt.b_dec[layer] + sum(acts[s] @ clt.W_dec[s][layer - s] for s in range(layer + 1))
            fixed[layer] = decoded / clt.out_scale[layer] + x @ _skip(clt)[layer]
            fixed[layer][:, 0] = cache[mlp_out_hook(layer)][:, 0]  # BOS keeps the model's own MLP output
        with model.hooks(fwd_hooks=[(mlp_out_hook(k), lambda out, hook, v=v: v) for k, v in fixed.items()]):
            literal = model(tokens)
        with replacement(model, clt):
            replaced = model(tokens)
        without = spread_clt(L, D, F, 3, b_dec=True)
        with replacement(model, without):
            no_skip = model(tokens)
    torch.testing.assert_close(replaced, literal, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(replaced, no_skip, atol=1e-3)


def test_layer_quality_counts_the_skip():
    model = tiny_model("tiny-gated")
    clt = _skip_clt().float()
    g = torch.Generator().manual_seed(1)
    docs = [torch.cat([torch.tensor([0]), torch.randint(1, 256, (20,), generator=g)]) for _ in range(4)]
    quality = layer_quality(model, clt, docs, batch_tokens=64)
    x = torch.cat([mlp_io(model, d[None])[0][1:] for d in docs])
    y = torch.cat([mlp_io(model, d[None])[1][1:] for d in docs])
    with torch.no_grad():
        acts = [clt.encode_layer(x[:, l], l) for l in range(L)]
        for layer in range(L):
            recon = clt.decode_layer(acts, layer) + x[:, layer] @ _skip(clt)[layer]
            fvu = (recon - y[:, layer]).pow(2).sum() / (y[:, layer] - y[:, layer].mean(0)).pow(2).sum()
            assert quality[layer].fvu == pytest.approx(fvu.item(), rel=1e-4)
