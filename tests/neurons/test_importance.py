"""The parallel PLND importances against the literal definition (zero the neuron, rerun, measure).

Tolerance: both sides are float32 sums of squares of the same quantities computed in a
different order, so they agree to float32 rounding. Measured: at most 2.3e-5 absolute on
importances up to ~120 (relative ~2e-7); the tests allow 1e-4 relative plus 1e-6 absolute.
"""

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer

from workbench.data.batching import Batch, pad, tokenize
from workbench.models.tiny import byte_tokenizer, tiny_config
from workbench.neurons.importance import batch_importance
from workbench.neurons.pattern_change import kernel
from workbench.neurons.plnd_reference import attention_reference, ffn_reference
from workbench.neurons.qk_importance import rotary_pairs
from workbench.neurons.sets import ATTENTION, STRUCTURES

TEXTS = ["In the beginning God created the heaven", "Im Anfang schuf Gott", "神爱世人, and more words"]
RTOL, ATOL = 1e-4, 1e-6


def _batch(model, texts=TEXTS):
    tokens = tokenize(model, texts)
    ids, mask = pad(tokens, 0)
    return tokens, Batch(list(range(len(tokens))), ids, mask)


def _tiny_variant(kind="tiny-gated", **changes):
    """A tiny model with extra features (post-sublayer norms, soft cap, ...) and norm weights that
    are not 1 (freshly initialised norms would hide a reference that skips them)."""
    cfg = tiny_config(kind)
    for key, value in changes.items():
        setattr(cfg, key, value)
    cfg.seed = 1
    model = HookedTransformer(cfg, tokenizer=byte_tokenizer(), default_padding_side="right")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln" in name or name.startswith("ln_final"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def gpt2_like_model():
    return _tiny_variant("tiny")


@pytest.fixture(scope="module")
def post_norm_model():
    return _tiny_variant(use_normalization_before_and_after=True)


@pytest.fixture(scope="module")
def soft_capped_model():
    return _tiny_variant(attn_scores_soft_cap=2.0)


@pytest.fixture(scope="module")
def qk_norm_model():
    """Gemma 3 style attention: per-head q/k RMSNorm before rotary, rotary on half the head
    dimensions in adjacent pairs, grouped-query attention, a sliding-window layer (5 keys) then a
    global one."""
    return _tiny_variant(
        use_qk_norm=True,
        rotary_dim=8,
        rotary_adjacent_pairs=True,
        use_local_attn=True,
        window_size=5,
        attn_types=["local", "global"],
    )


def _check_against_reference(model, structures=("ffn", *ATTENTION), backend="auto"):
    tokens, batch = _batch(model)
    parallel = batch_importance(model, batch, structures, backend=backend)
    for doc, toks in enumerate(tokens):
        for layer in range(model.cfg.n_layers):
            for structure in structures:
                size = parallel.importance[structure].shape[-1]
                if structure == "ffn":
                    literal = ffn_reference(model, toks[None], layer, range(size))
                else:
                    literal = attention_reference(model, toks[None], layer, structure, range(size))
                np.testing.assert_allclose(
                    parallel.importance[structure][doc, layer].numpy(),
                    np.array([literal[k] for k in range(size)]),
                    rtol=RTOL,
                    atol=ATOL,
                    err_msg=f"{structure} layer {layer} doc {doc}",
                )


@pytest.mark.parametrize("fixture", ["gpt2_like_model", "post_norm_model"])
def test_parallel_importance_equals_zeroing_each_neuron(request, fixture):
    """GPT-2 style (plain MLP, biases, MHA) and Gemma style (gated MLP, rotary, GQA, norms
    before and after each sublayer), with trained-looking norm weights."""
    _check_against_reference(request.getfixturevalue(fixture))


def test_soft_capped_scores_change_through_the_cap(soft_capped_model):
    _check_against_reference(soft_capped_model, ("attn_q", "attn_k"))


BACKENDS = ["torch", pytest.param("c", marks=pytest.mark.skipif(kernel() is None, reason="no C compiler"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_and_key_neurons_are_columns_zeroed_through_norm_and_rotary(qk_norm_model, backend):
    """The parameter neuron: zeroing W_Q's (W_K's) column moves the whole q-normed head and both
    coordinates of its rotary pair; the closed form equals the literal rerun."""
    _check_against_reference(qk_norm_model, ("attn_q", "attn_k"), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_equal_the_literal_on_plain_rotary_and_on_no_rotary(gpt2_like_model, tiny_gated, backend):
    for model in (gpt2_like_model, tiny_gated):
        _check_against_reference(model, ("attn_q", "attn_k"), backend)


@pytest.mark.parametrize("fixture", ["qk_norm_model", "tiny_gated"])
def test_rotary_pairs_are_the_models_own_rotation(request, fixture):
    """``R_t e_k = cos[t, k] e_k + sin[t, k] e_partner[k]``, against the attention's own rotary."""
    attn = request.getfixturevalue(fixture).blocks[0].attn
    d, n = attn.cfg.d_head, 11
    partner, cos, sin = rotary_pairs(attn, n)
    rotated = attn.apply_rotary(torch.eye(d).expand(1, n, d, d))[0]  # [pos, k, m] = (R_t e_k)[m]
    expected = torch.zeros(n, d, d)
    expected[:, torch.arange(d), torch.arange(d)] += cos
    expected[:, torch.arange(d), partner] += sin
    torch.testing.assert_close(rotated, expected)


def test_large_scores_stay_finite_and_exact():
    """Scores up to ~70 (W_Q, W_K scaled 25x; the pattern near one-hot): the shifted softmax stays
    finite and equal to the literal rerun, with no second, exact path."""
    model = _tiny_variant()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(25)
            block.attn.W_K.mul_(25)
    tokens, batch = _batch(model, TEXTS[:1])
    for backend in ("torch", "c") if kernel() is not None else ("torch",):
        found = batch_importance(model, batch, ("attn_q",), backend=backend).importance["attn_q"]
        assert torch.isfinite(found).all()
        literal = attention_reference(model, tokens[0][None], 1, "attn_q", range(found.shape[-1]))
        np.testing.assert_allclose(
            found[0, 1].numpy(), [literal[k] for k in range(found.shape[-1])], rtol=RTOL, atol=1e-5
        )


def test_zeroing_the_input_or_the_output_side_of_an_ffn_neuron_is_the_same(tiny_gated, tiny):
    for model in (tiny, tiny_gated):
        toks = tokenize(model, TEXTS[:1])[0][None]
        assert ffn_reference(model, toks, 1, range(8), zero="in") == pytest.approx(
            ffn_reference(model, toks, 1, range(8), zero="out"), rel=1e-5, abs=1e-7
        )


def test_batching_and_padding_do_not_change_importances(tiny_gated):
    tokens, batch = _batch(tiny_gated)
    together = batch_importance(tiny_gated, batch, lape=True)
    for doc, toks in enumerate(tokens):
        alone = batch_importance(tiny_gated, Batch([0], toks[None], torch.ones_like(toks)[None]), lape=True)
        for structure, values in together.importance.items():
            np.testing.assert_allclose(values[doc], alone.importance[structure][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(together.positive[doc], alone.positive[0])
        assert together.n_tokens[doc] == len(toks) - 1  # BOS does not count


def test_bos_is_excluded_unless_asked_for(tiny_gated):
    _, batch = _batch(tiny_gated, TEXTS[:1])
    without = batch_importance(tiny_gated, batch, ("ffn",))
    with_bos = batch_importance(tiny_gated, batch, ("ffn",), include_bos=True)
    assert with_bos.n_tokens[0] == without.n_tokens[0] + 1
    assert (with_bos.importance["ffn"] >= without.importance["ffn"] - 1e-6).all()
    assert not torch.allclose(with_bos.importance["ffn"], without.importance["ffn"])


def test_torch_chunks_bound_memory_without_changing_the_result(qk_norm_model):
    _, batch = _batch(qk_norm_model)
    whole = batch_importance(qk_norm_model, batch, ("attn_q", "attn_k"), backend="torch")
    chunked = batch_importance(qk_norm_model, batch, ("attn_q", "attn_k"), backend="torch", chunk_elements=64)
    for structure in ("attn_q", "attn_k"):
        torch.testing.assert_close(chunked.importance[structure], whole.importance[structure], rtol=1e-5, atol=1e-7)


def test_importance_never_computes_the_unembedding(tiny_gated, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("unembedding computed")

    monkeypatch.setattr(tiny_gated.unembed, "forward", forbidden)
    _, batch = _batch(tiny_gated, TEXTS[:2])
    batch_importance(tiny_gated, batch)


def test_importance_leaves_no_hooks_behind(tiny_gated):
    _, batch = _batch(tiny_gated, TEXTS[:1])
    batch_importance(tiny_gated, batch)
    assert all(not hp.fwd_hooks for hp in tiny_gated.hook_dict.values())


def test_the_literal_reference_leaves_the_model_untouched(tiny_gated):
    before = {k: v.clone() for k, v in tiny_gated.state_dict().items()}
    toks = tokenize(tiny_gated, TEXTS[:1])[0][None]
    ffn_reference(tiny_gated, toks, 0, range(4))
    for structure in ATTENTION:
        attention_reference(tiny_gated, toks, 1, structure, range(4))
    after = tiny_gated.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _hf_sublayer_change(hf, tokens, module_path: str, zero) -> float:
    """Literal, on the Hugging Face model itself: zero parameters in a copy, capture one module's
    output in both, return the squared change summed over the positions after BOS."""
    import copy

    changed = copy.deepcopy(hf)
    with torch.no_grad():
        zero(changed)
    outputs = []
    for model in (hf, changed):
        module = model.get_submodule(module_path)
        handle = module.register_forward_hook(lambda m, i, o: outputs.append(o))
        with torch.no_grad():
            model(tokens)
        handle.remove()
    return float((outputs[1] - outputs[0])[0, 1:].square().sum())


def _hf_pattern_change(hf, tokens, layer: int, zero) -> float:
    """Literal Q/K importance on the HF model: the change of layer ``layer``'s attention patterns
    (every head) when parameters are zeroed in a copy, summed over the query rows after BOS."""
    import copy

    changed = copy.deepcopy(hf)
    with torch.no_grad():
        zero(changed)
        before, after = (m(tokens, output_attentions=True).attentions[layer] for m in (hf, changed))
    return float((after - before)[0, :, 1:].square().sum())


def test_xglm_importances_equal_zeroing_the_hf_parameters(tmp_path):
    """XGLM (converted natively): FFN (fc1 -> GELU -> fc2), V, O, Q and K importances equal zeroing
    fc1's row, v_proj's row, out_proj's column, q_proj's or k_proj's row in HF's own model."""
    from conftest import save_tiny_hf

    from workbench.models.loading import load_model

    save_tiny_hf("xglm", tmp_path / "xglm")
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "xglm"), attn_implementation="eager").eval()
    model = load_model(str(tmp_path / "xglm"))
    tokens = model.to_tokens(TEXTS[0])
    fast = batch_importance(model, Batch([0], tokens, torch.ones_like(tokens)), STRUCTURES)
    d_head = hf.config.d_model // hf.config.attention_heads
    for layer in range(2):
        prefix = f"model.layers.{layer}"
        for k in (0, 5, 63):

            def zero_fc1(m, k=k):
                m.get_submodule(f"{prefix}.fc1").weight[k] = 0
                m.get_submodule(f"{prefix}.fc1").bias[k] = 0

            literal = _hf_sublayer_change(hf, tokens, f"{prefix}.fc2", zero_fc1)
            assert fast.importance["ffn"][0, layer, k].item() == pytest.approx(literal, rel=RTOL, abs=ATOL)
        for index in (0, 9, 31):
            head, k = divmod(index, d_head)

            def zero_v(m, i=index):
                m.get_submodule(f"{prefix}.self_attn.v_proj").weight[i] = 0
                m.get_submodule(f"{prefix}.self_attn.v_proj").bias[i] = 0

            def zero_o(m, i=index):
                m.get_submodule(f"{prefix}.self_attn.out_proj").weight[:, i] = 0

            out = f"{prefix}.self_attn.out_proj"
            assert fast.importance["attn_v"][0, layer, index].item() == pytest.approx(
                _hf_sublayer_change(hf, tokens, out, zero_v), rel=RTOL, abs=ATOL
            )
            assert fast.importance["attn_o"][0, layer, index].item() == pytest.approx(
                _hf_sublayer_change(hf, tokens, out, zero_o), rel=RTOL, abs=ATOL
            )
            for structure, proj in (("attn_q", "q_proj"), ("attn_k", "k_proj")):

                def zero_row(m, i=index, path=f"{prefix}.self_attn.{proj}"):
                    m.get_submodule(path).weight[i] = 0
                    m.get_submodule(path).bias[i] = 0

                assert fast.importance[structure][0, layer, index].item() == pytest.approx(
                    _hf_pattern_change(hf, tokens, layer, zero_row), rel=1e-3, abs=1e-7
                )


def test_bridged_models_refuse_query_and_key_importances(tmp_path):
    from conftest import BRIDGED, save_tiny_hf

    from workbench.errors import WorkbenchError
    from workbench.models.loading import load_model

    save_tiny_hf(BRIDGED, tmp_path / "model")
    model = load_model(str(tmp_path / "model"))
    tokens = model.to_tokens(TEXTS[0])
    with pytest.raises(WorkbenchError, match="attn_v, attn_o"):
        batch_importance(model, Batch([0], tokens, torch.ones_like(tokens)), ("attn_q",))
