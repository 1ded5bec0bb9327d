"""Steering through transcoder features held to its definition: the hooks against a literal
computed one layer at a time; strength 0 and errors leave the model as it was; the matched
control writes the same norms along other features; the language measures against a hand count
on a constructed vocabulary labelling; bad features are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import spread_clt

from workbench.clt.steering.plan import write_vectors
from workbench.clt.steering.steer import (
    Intervention,
    check_intervention,
    matched_control,
    steer_measure,
    steer_measures,
    steering,
)
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.language.classifier import SPECIAL_LABELS
from workbench.language.vocabulary import VocabLanguages
from workbench.lens.readout import greedy
from workbench.models.loading import tiny_model

L, D, F = 2, 64, 32


@pytest.fixture(scope="module")
def model64():
    return tiny_model("tiny-gated").to(torch.float64)


def _clt(per_layer: bool = False, seed: int = 3) -> CrossLayerTranscoder:
    return spread_clt(L, D, F, seed, per_layer=per_layer)


def _tokens(n: int = 2, p: int = 10, seed: int = 5) -> torch.Tensor:
    return torch.randint(0, 256, (n, p), generator=torch.Generator().manual_seed(seed))


IDENTITY = Intervention(off=((0, 1), (0, 5), (1, 2), (1, 7)), on=((0, 3), (1, 4)), on_values=(0.8, 1.5), strength=2.5)
WRITTEN_ELSEWHERE = Intervention(
    off=((0, 1), (0, 5), (1, 2), (1, 7)),
    on=((0, 3), (1, 4)),
    on_values=(0.8, 1.5),
    strength=0.7,
    off_write=((0, 9), (0, 11), (1, 20), (1, 21)),
    on_write=((0, 30), (1, 0)),
    off_gain=(1.5, 0.5, 2.0, -1.0),
    on_gain=(3.0, 0.25),
)


def _literal_logits(model, clt, iv: Intervention, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Fixed additions at every MLP output, found one layer at a time: run with the additions of
    layers < t, read the activations at layer t's input, add up every feature's change there."""
    reads = [("off", f, w, g, 0.0) for f, w, g in zip(iv.off, iv.writes("off"), iv.gains("off"))]
    reads += [("on", f, w, g, v) for f, w, g, v in zip(iv.on, iv.writes("on"), iv.gains("on"), iv.on_values)]
    fixed: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for t in range(L):
            with model.hooks(fwd_hooks=[(mlp_out_hook(k), lambda out, hook, v=v: out + v) for k, v in fixed.items()]):
                _, cache = model.run_with_cache(tokens)
            delta = torch.zeros_like(cache[mlp_out_hook(t)])
            for kind, (layer, f), (w_layer, w_f), gain, value in reads:
                k = t - w_layer
                if layer > t or k >= clt.config.targets(w_layer):
                    continue
                if kind == "off":
                    change = -iv.strength * clt.encode_layer(cache[mlp_in_hook(layer)], layer)[..., f]
                else:
                    change = torch.full(tokens.shape, iv.strength * value, dtype=torch.float64)
                change[:, :start] = 0
                delta += gain * change[..., None] * clt.W_dec[w_layer][k][w_f] / clt.out_scale[t]
            fixed[t] = delta
        with model.hooks(fwd_hooks=[(mlp_out_hook(k), lambda out, hook, v=v: out + v) for k, v in fixed.items()]):
            return model(tokens)


@pytest.mark.parametrize("per_layer", [False, True])
@pytest.mark.parametrize("iv, start", [(IDENTITY, 0), (WRITTEN_ELSEWHERE, 0), (IDENTITY, 4)])
def test_steering_equals_a_layer_by_layer_literal(model64, per_layer, iv, start):
    clt = _clt(per_layer)
    tokens = _tokens()
    active = clt.encode_layer(model64.run_with_cache(tokens)[1][mlp_in_hook(0)], 0)[..., [1, 5]]
    assert 0 < (active > 0).float().mean() < 1  # some off-features on, some off: the JumpReLU matters
    with torch.no_grad():
        plain = model64(tokens)
        with steering(model64, clt, iv, start=start):
            steered = model64(tokens)
    literal = _literal_logits(model64, clt, iv, tokens, start)
    torch.testing.assert_close(steered, literal, rtol=0, atol=1e-9)
    assert not torch.allclose(steered, plain, atol=1e-3)
    if start:  # positions before `start` see no change at all (causal model)
        torch.testing.assert_close(steered[:, :start], plain[:, :start], rtol=0, atol=1e-12)


def test_a_skip_is_not_steered(model64):
    """A skip transcoder's skip is no feature: it steers as the same transcoder without a skip (the
    MLPs still run), against the same literal."""
    clt = spread_clt(L, D, F, 3, skip=True)
    assert clt.W_skip is not None
    with torch.no_grad():
        clt.W_skip.copy_(torch.randn(L, D, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) / 8)
    tokens = _tokens()
    with torch.no_grad(), steering(model64, clt, IDENTITY):
        steered = model64(tokens)
    torch.testing.assert_close(steered, _literal_logits(model64, _clt(), IDENTITY, tokens), rtol=0, atol=1e-9)


def test_strength_zero_changes_nothing_and_hooks_go_on_errors(model64):
    clt = _clt()
    tokens = _tokens()
    names = [mlp_in_hook(k) for k in range(L)] + [mlp_out_hook(k) for k in range(L)]
    with torch.no_grad():
        plain = model64(tokens)
        with steering(model64, clt, IDENTITY.with_strength(0.0)):
            assert all(not model64.hook_dict[name].fwd_hooks for name in names)
            assert torch.equal(model64(tokens), plain)
        with steering(model64, clt, WRITTEN_ELSEWHERE.with_strength(0.0)):
            assert torch.equal(model64(tokens), plain)
        with pytest.raises(RuntimeError, match="interrupted"), steering(model64, clt, IDENTITY):
            assert any(model64.hook_dict[name].fwd_hooks for name in names)
            assert not torch.allclose(model64(tokens), plain, atol=1e-3)
            raise RuntimeError("interrupted")
        assert all(not model64.hook_dict[name].fwd_hooks for name in names)
        assert torch.equal(model64(tokens), plain)


def _added(model, clt, iv: Intervention, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """What steering adds at each layer's MLP output: captured before and after its hooks."""
    before, after = {}, {}

    def keep(store, k):
        def hook(out, hook):
            store[k] = out.clone()

        return hook

    before_hooks = [(mlp_out_hook(k), keep(before, k)) for k in range(L)]
    after_hooks = [(mlp_out_hook(k), keep(after, k)) for k in range(L)]
    # entered in order: the first hooks read the output before steering, the last after it
    with (
        torch.no_grad(),
        model.hooks(fwd_hooks=before_hooks),
        steering(model, clt, iv),
        model.hooks(fwd_hooks=after_hooks),
    ):
        model(tokens)
    return {k: after[k] - before[k] for k in range(L)}


@pytest.mark.parametrize("per_layer", [True, False])
def test_matched_control_matches_count_layers_and_written_norms(model64, per_layer):
    clt = _clt(per_layer)
    exclude = {(0, f) for f in range(10, 20)} | {(1, f) for f in range(0, 12)}
    control = matched_control(clt, IDENTITY, seed=1, exclude=exclude)
    check_intervention(clt, control)
    assert (control.off, control.on, control.on_values, control.strength) == (
        IDENTITY.off,
        IDENTITY.on,
        IDENTITY.on_values,
        IDENTITY.strength,
    )
    writes = control.off_write + control.on_write
    reads = IDENTITY.off + IDENTITY.on
    assert len(writes) == len(set(writes)) == len(reads)
    assert [w[0] for w in writes] == [r[0] for r in reads]
    assert not set(writes) & (exclude | set(reads))
    assert matched_control(clt, IDENTITY, seed=1, exclude=exclude) == control
    assert matched_control(clt, IDENTITY, seed=2, exclude=exclude) != control
    # per feature: the same norm written (in the transcoder's scaled units), per target layer for a
    # per-layer CLT, over all its target layers for a cross-layer one
    scale = clt.out_scale[None, :, None]
    ident = write_vectors(clt, reads) * scale
    ctrl = write_vectors(clt, writes, control.off_gain + control.on_gain) * scale
    axes = -1 if per_layer else (-2, -1)
    torch.testing.assert_close(ctrl.norm(dim=axes), ident.norm(dim=axes), rtol=1e-12, atol=0)
    assert not torch.allclose(ctrl, ident)
    # per token in the model, for one off-feature (read on the unsteered layer 0) and one on-feature
    tokens = _tokens()
    for single in (
        Intervention(off=((0, 1),), on=(), on_values=(), strength=2.5),
        Intervention(off=(), on=((1, 4),), on_values=(1.5,), strength=2.5),
    ):
        got, want = (
            _added(model64, clt, matched_control(clt, single, 0, exclude), tokens),
            _added(model64, clt, single, tokens),
        )
        norms = [torch.stack([(clt.out_scale[k] * d[k]).norm(dim=-1) for k in range(L)]) for d in (got, want)]
        assert (norms[1].sum(0) > 0).any()
        assert not torch.allclose(torch.stack(list(got.values())), torch.stack(list(want.values())))
        if per_layer:
            torch.testing.assert_close(norms[0], norms[1], rtol=1e-9, atol=1e-12)
        else:
            torch.testing.assert_close(norms[0].norm(dim=0), norms[1].norm(dim=0), rtol=1e-9, atol=1e-12)
    matched_control(clt, IDENTITY, 0, exclude={(1, f) for f in range(F - 3)})  # three left for three reads
    with pytest.raises(ValueError, match="Layer 1: 3 control features needed but only 2"):
        matched_control(clt, IDENTITY, 0, exclude={(1, f) for f in range(F - 2)})


def _vocab(b_tokens: set[int], d_vocab: int = 260) -> VocabLanguages:
    """Languages "aa" and "bb": ``b_tokens`` are bb; of the rest, id % 3 == 0 is aa, 1 none, 2 ambiguous."""
    names = list(SPECIAL_LABELS) + ["aa", "bb"]
    labels = np.empty(d_vocab, dtype=np.int16)
    for i in range(d_vocab):
        labels[i] = names.index("bb") if i in b_tokens else names.index(["aa", "none", "ambiguous"][i % 3])
    return VocabLanguages(names, labels, np.zeros(d_vocab, dtype=np.int64))


def test_greedy_and_steer_measure_against_a_hand_count():
    model = tiny_model("tiny")
    clt = CrossLayerTranscoder(CLTConfig(n_layers=L, d_model=D, n_features=F), seed=0)
    v = torch.randn(D, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # tokens that win when v swamps the last residual: language bb
        limit = model.unembed(model.ln_final(1e4 * v[None, None]))[0, 0]
        b_tokens = set(limit.topk(6).indices.tolist())
        clt.W_dec[1][0, 4] = 50 * v  # on-feature (1, 4) writes 50 * v per unit of activation
    vocab = _vocab(b_tokens)
    prompts, new = _tokens(3, 6, seed=7), 5

    # the plain continuation by hand: argmax step by step, masses of aa and bb
    seq, mass = prompts.clone(), []
    with torch.no_grad():
        for _ in range(new):
            probs = torch.softmax(model(seq)[:, -1], -1)
            mass.append([float(probs[:, torch.from_numpy(vocab.is_label(x))].sum(-1).mean()) for x in ("aa", "bb")])
            seq = torch.cat([seq, probs.argmax(-1, keepdim=True)], 1)
    hand = seq[:, prompts.shape[1] :]
    ids, per_step = greedy(model, prompts, new, reduce=lambda p: p.max(-1).values)
    assert torch.equal(ids, hand) and per_step.shape == (3, new)
    labels = [vocab.label_of(i) for i in hand.flatten().tolist()]
    labelled = sum(x in ("aa", "bb") for x in labels)
    assert 0 < labelled < hand.numel()  # "none" and "ambiguous" tokens are generated and left out

    off = Intervention(off=((0, 1),), on=((1, 4),), on_values=(2.0,), strength=0.0)
    zero = steer_measure(model, clt, prompts, off, vocab, "aa", "bb", new, baseline=hand, batch_size=2)
    assert zero.labelled == labelled and zero.tokens == hand.numel() and zero.changed == 0.0
    assert zero.share_a == pytest.approx(labels.count("aa") / labelled)
    assert zero.share_b == pytest.approx(labels.count("bb") / labelled)
    assert zero.mass_a == pytest.approx(np.mean([m[0] for m in mass]), rel=1e-5)
    assert zero.mass_b == pytest.approx(np.mean([m[1] for m in mass]), rel=1e-5)

    steered = steer_measure(model, clt, prompts, off.with_strength(10.0), vocab, "aa", "bb", new, baseline=hand)
    assert steered.share_b == 1.0 and steered.share_a == 0.0 and steered.labelled == steered.tokens
    # a random model's distributions are flat: the mass moves, but not to near 1
    assert steered.mass_b > 3 * zero.mass_b and steered.mass_a < zero.mass_a and steered.changed > 0.5
    # the matched control changes as much along random decoders: no move towards bb
    control = steer_measure(
        model, clt, prompts, matched_control(clt, off.with_strength(10.0), 0, set()), vocab, "aa", "bb", new
    )
    assert control.mass_b < steered.mass_b / 2
    for m in (zero, steered):
        assert 0 <= m.share_a + m.share_b <= 1 and 0 <= m.mass_a + m.mass_b <= 1 + 1e-6


def test_bad_features_are_refused_by_name(model64):
    clt = _clt()
    bad = {
        "layer 2 out of range": Intervention(off=((2, 0),), on=(), on_values=(), strength=1.0),
        "index 32 out of range": Intervention(off=(), on=((1, 32),), on_values=(1.0,), strength=1.0),
        "index -1 out of range": Intervention(off=((0, -1),), on=(), on_values=(), strength=1.0),
        r"off-feature \(0, 1\) is written along \(1, 1\), in another layer": Intervention(
            off=((0, 1),), on=(), on_values=(), strength=1.0, off_write=((1, 1),)
        ),
        "1 on-features but 2 on_values": Intervention(off=(), on=((0, 1),), on_values=(1.0, 2.0), strength=1.0),
        "2 off-features but 1 entries in off_gain": Intervention(
            off=((0, 1), (0, 2)), on=(), on_values=(), strength=1.0, off_gain=(1.0,)
        ),
        "repeated": Intervention(off=((0, 1), (0, 1)), on=(), on_values=(), strength=1.0),
    }
    for message, iv in bad.items():
        with pytest.raises(ValueError, match=message):
            check_intervention(clt, iv)
        with pytest.raises(ValueError, match=message), steering(model64, clt, iv):
            pass
    with pytest.raises(ValueError, match="layer 2 out of range"):
        matched_control(clt, bad["layer 2 out of range"], 0, set())
    other = CrossLayerTranscoder(CLTConfig(n_layers=L, d_model=32, n_features=F))
    with pytest.raises(ValueError, match="width 32"), steering(model64, other, IDENTITY):
        pass
    with pytest.raises(ValueError, match="'cc' is not a language"):
        steer_measure(model64, clt, _tokens(), IDENTITY, _vocab(set()), "aa", "cc", 2)


def test_a_layer_without_features_is_never_steered(model64):
    """A transcoder of layer 0 only (cross-layer: its features would reach layer 1): no hook on
    layer 1's MLP output, nothing written there, and layer 1's features refused by name."""
    clt = spread_clt(L, D, F, 3, layers=(0,))
    iv = Intervention(off=((0, 1), (0, 5)), on=((0, 3),), on_values=(0.8,), strength=2.0)
    assert not write_vectors(clt, [(0, 1), (0, 3)])[:, 1].any()
    tokens = _tokens()
    with torch.no_grad():
        plain = model64(tokens)
        with steering(model64, clt, iv):
            assert model64.hook_dict[mlp_out_hook(0)].fwd_hooks
            assert not model64.hook_dict[mlp_out_hook(1)].fwd_hooks and not model64.hook_dict[mlp_in_hook(1)].fwd_hooks
            assert not torch.allclose(model64(tokens), plain, atol=1e-3)
    with pytest.raises(ValueError, match="layer 1 has no features"):
        check_intervention(clt, Intervention(off=((1, 2),), on=(), on_values=(), strength=1.0))


def test_last_logits_are_the_full_pass_last_position(model64):
    """Also through a final logit soft-cap (Gemma 2), which the model applies after its unembedding."""
    from workbench.lens.readout import last_logits

    tokens = _tokens(3, 9)
    capped = tiny_model("tiny-gated").to(torch.float64)
    capped.cfg.output_logits_soft_cap = 0.5
    with torch.no_grad():
        for model in (model64, capped):
            torch.testing.assert_close(last_logits(model, tokens), model(tokens)[:, -1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("iv", [IDENTITY, WRITTEN_ELSEWHERE], ids=["identity", "written elsewhere"])
def test_cached_continuations_equal_rerunning_the_sequence(model64, iv):
    """Steered greedy continuation with a key-value cache (one new position per step) against
    re-running the whole growing sequence: the same tokens and the same step distributions."""
    clt, tokens = _clt(), _tokens(3, 7)
    for strength in (0.0, 3.0):
        context = lambda: steering(model64, clt, iv.with_strength(strength))  # noqa: E731
        with context():
            fast = greedy(model64, tokens, 6, lambda p: p, cache=True)
        with context():
            slow = greedy(model64, tokens, 6, lambda p: p, cache=False)
        assert torch.equal(fast[0], slow[0])
        torch.testing.assert_close(fast[1], slow[1], rtol=1e-9, atol=1e-12)


def test_a_sweep_in_one_batch_equals_each_intervention_alone(model64):
    """Row blocks steered by different interventions (strength 0 among them) give each block the
    logits, continuations and measures of its intervention run alone."""
    clt, tokens = _clt(), _tokens(3, 8)
    sweep = [IDENTITY.with_strength(0.0), IDENTITY, WRITTEN_ELSEWHERE, matched_control(clt, IDENTITY, 0)]
    with torch.no_grad():
        with steering(model64, clt, sweep, start=2):
            together = model64(tokens.repeat(len(sweep), 1)).unflatten(0, (len(sweep), 3))
        for k, iv in enumerate(sweep):
            with steering(model64, clt, iv, start=2):
                torch.testing.assert_close(together[k], model64(tokens), rtol=1e-10, atol=1e-10)
        with pytest.raises(ValueError, match="4 equal blocks"), steering(model64, clt, sweep):
            model64(tokens)
    vocab = _vocab({3, 7, 11, 200})
    measured = steer_measures(model64, clt, tokens, sweep, vocab, "aa", "bb", 4, batch_size=2)
    for iv, m in zip(sweep, measured):
        alone = steer_measure(model64, clt, tokens, iv, vocab, "aa", "bb", 4)
        assert (m.labelled, m.tokens) == (alone.labelled, alone.tokens)
        for key in ("share_a", "share_b", "mass_a", "mass_b"):
            assert getattr(m, key) == pytest.approx(getattr(alone, key), rel=1e-9, abs=1e-12, nan_ok=True)
