"""The cross-layer transcoder held to its definition: the forward pass against a literal loop over
layers, features and decoders; JumpReLU's gradients against finite differences; a CLT set by hand
to reproduce a linear MLP exactly; training on a tiny model's activations; save and load."""

from __future__ import annotations

import pytest
import torch

from workbench.clt.activations import mlp_io
from workbench.clt.jumprelu import JumpReLU, threshold_surrogate
from workbench.clt.training.loss import clt_loss
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.models.loading import tiny_model


def _clt(per_layer: bool = False, seed: int = 0, **shape) -> CrossLayerTranscoder:
    config = CLTConfig(n_layers=3, d_model=8, n_features=16, per_layer=per_layer, **shape)
    clt = CrossLayerTranscoder(config, seed=seed).double()
    with torch.no_grad():
        clt.b_enc.normal_(0, 0.5)
        clt.b_dec.normal_(0, 0.1)
        clt.in_scale.copy_(torch.tensor([0.5, 1.0, 2.0]))
        clt.out_scale.copy_(torch.tensor([3.0, 1.0, 0.25]))
    clt.clear_uncovered()
    return clt


SHAPES = {  # name -> (CLTConfig fields, the layers with features, the furthest a feature writes)
    "cross-layer": ({}, (0, 1, 2), 2),
    "per-layer": ({"per_layer": True}, (0, 1, 2), 0),
    "window-1": ({"window": 1}, (0, 1, 2), 1),
    "layers-0-2": ({"layers": (2, 0)}, (0, 2), 2),
    "window-1-layers-0-1": ({"window": 1, "layers": [0, 1]}, (0, 1), 1),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_equals_a_literal_loop(shape):
    fields, covered, reach = SHAPES[shape]
    clt = _clt(**fields)
    assert clt.config.covered == covered
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    recon, acts = clt(x)
    theta = clt.threshold
    for t in range(5):
        for target in range(3):
            if target not in covered:  # no features, no reconstruction: the MLP is left as it is
                assert not acts[t, target].any() and not recon[t, target].any()
                continue
            expected = clt.b_dec[target].clone()
            for source in covered:
                if not 0 <= target - source <= reach:
                    continue
                for f in range(16):
                    z = float(x[t, source] @ (clt.W_enc[source, :, f] * clt.in_scale[source])) + float(
                        clt.b_enc[source, f]
                    )
                    a = z if z > float(theta[source, f]) else 0.0
                    assert acts[t, source, f].item() == pytest.approx(a, abs=1e-12)
                    expected = expected + a * clt.W_dec[source][target - source][f]
            torch.testing.assert_close(recon[t, target], expected / clt.out_scale[target], rtol=1e-10, atol=1e-12)
            layer_by_layer = clt.decode_layer([clt.encode_layer(x[t, s], s) for s in range(target + 1)], target)
            torch.testing.assert_close(layer_by_layer, recon[t, target], rtol=1e-10, atol=1e-12)
    norms = clt.decoder_norms()
    for source in range(3):
        for f in range(16):
            literal = torch.cat([clt.W_dec[source][k][f] for k in range(clt.config.targets(source))]).norm()
            assert norms[source, f].item() == pytest.approx(literal.item())


def test_shapes_are_checked_and_survive_json(tmp_path):
    with pytest.raises(ValueError, match="not all in 0..2"):
        CLTConfig(n_layers=3, d_model=8, n_features=4, layers=(1, 3))
    with pytest.raises(ValueError, match="contradicts"):
        CLTConfig(n_layers=3, d_model=8, n_features=4, per_layer=True, window=2)
    with pytest.raises(ValueError, match=">= 0"):
        CLTConfig(n_layers=3, d_model=8, n_features=4, window=-1)
    clt = _clt(window=1, layers=(0, 1))
    assert [clt.config.targets(layer) for layer in range(3)] == [2, 2, 1]
    assert "windowed" in clt.config.kind and "on layers 0, 1 of 3" in clt.config.kind
    clt.save(tmp_path / "clt")
    again = CrossLayerTranscoder.load(tmp_path / "clt").double()
    assert again.config == clt.config
    x = torch.randn(4, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(again(x)[0], clt(x)[0])


@pytest.mark.parametrize("shape", ["per-layer", "window-1-layers-0-1", "per-layer-skip"])
def test_compiled_loss_equals_the_eager_one(shape):
    """``torch.compile`` once miscompiled an index_add into a broadcast bias (mse off by 500x):
    the compiled loss and its gradients are held to the eager ones."""
    from workbench.clt.training.loss import loss_terms

    skip = shape.endswith("-skip")
    clt = _clt(**SHAPES[shape.removesuffix("-skip")][0], skip=skip).float()
    covered = list(clt.config.covered)
    if clt.W_skip is not None:
        with torch.no_grad():
            clt.W_skip.normal_(0, 0.3)
    x, y = torch.randn(32, 3, 8), torch.randn(32, 3, 8)
    lam = torch.linspace(0.5, 1.0, len(covered)) if skip else torch.tensor(0.7)  # one lambda per layer, or one
    args = (x[:, covered], y[:, covered], lam)
    grads = []
    for terms in (loss_terms, torch.compile(loss_terms, dynamic=False)):
        clt.zero_grad()
        out = terms(clt, *args)
        out[0].backward()
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in clt.parameters()])
        assert all(g.isfinite().all() for g in grads[-1])
        for got, want in zip(out, loss_terms(clt, *args)):
            torch.testing.assert_close(got.detach(), want.detach())
    for eager, compiled in zip(*grads):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


def test_jumprelu_gradients_match_finite_differences():
    eps, h = 0.5, 1e-6
    z = torch.tensor([0.1, 0.55, 0.7, 0.8, 1.2, -0.3], dtype=torch.float64, requires_grad=True)
    theta = torch.full((6,), 0.6, dtype=torch.float64, requires_grad=True)
    JumpReLU.apply(z, theta, eps).sum().backward()
    for i in range(6):  # input: straight through where z > theta, away from the jump
        up, down = z.detach().clone(), z.detach().clone()
        up[i] += h
        down[i] -= h
        fd = (JumpReLU.apply(up, theta.detach(), eps) - JumpReLU.apply(down, theta.detach(), eps))[i] / (2 * h)
        assert z.grad[i].item() == pytest.approx(fd.item(), abs=1e-6)
    for i in range(6):  # threshold: the derivative of the surrogate, inside and outside the window
        fd = (
            threshold_surrogate(z.detach()[i], theta.detach()[i] + h, eps)
            - threshold_surrogate(z.detach()[i], theta.detach()[i] - h, eps)
        ) / (2 * h)
        assert theta.grad[i].item() == pytest.approx(fd.item(), abs=1e-6)
    assert (theta.grad[[0, 4, 5]] == 0).all() and (theta.grad[[1, 2, 3]] < 0).all()
    # the surrogate is JumpReLU outside the window
    far = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(threshold_surrogate(far, torch.tensor(0.5, dtype=torch.float64), 0.2), far)


def test_a_clt_set_to_a_linear_mlp_reconstructs_it_exactly():
    """Features [x, -x] through JumpReLU (threshold ~0) are relu(x) and relu(-x); decoders [M; -M]
    give relu(x) M - relu(-x) M = x M, the output of a linear MLP, with no error at all."""
    L, d = 3, 8
    clt = CrossLayerTranscoder(CLTConfig(n_layers=L, d_model=d, n_features=2 * d, threshold_init=1e-9)).double()
    mlps = torch.randn(L, d, d, dtype=torch.float64)
    with torch.no_grad():
        clt.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)], dim=1).expand(L, d, 2 * d))
        for layer in range(L):
            clt.W_dec[layer].zero_()
            clt.W_dec[layer][0].copy_(torch.cat([mlps[layer], -mlps[layer]]))
    x = torch.randn(32, L, d, dtype=torch.float64)
    target = torch.einsum("tld,lde->tle", x, mlps)
    recon, _ = clt(x)
    torch.testing.assert_close(recon, target, rtol=0, atol=1e-12)
    assert clt_loss(clt, x, target, sparsity=0.0).mse < 1e-20


def test_mlp_io_reads_the_hooks_and_training_lowers_the_loss():
    model = tiny_model("tiny-gated")
    tokens = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(0))
    inputs, outputs = mlp_io(model, tokens)
    _, cache = model.run_with_cache(tokens)
    assert inputs.shape == outputs.shape == (8 * 32, 2, 64)
    torch.testing.assert_close(inputs[:32, 1], cache["blocks.1.ln2.hook_normalized"][0])
    torch.testing.assert_close(outputs[32:64, 0], cache["blocks.0.hook_mlp_out"][1])

    torch.manual_seed(0)
    clt = CrossLayerTranscoder(CLTConfig(n_layers=2, d_model=64, n_features=128, model="tiny-gated"))
    clt.set_scales(inputs, outputs)
    optimizer = torch.optim.Adam(clt.parameters(), lr=2e-3)
    losses = []
    for step in range(150):
        batch = torch.randint(0, len(inputs), (64,), generator=torch.Generator().manual_seed(step))
        parts = clt_loss(clt, inputs[batch], outputs[batch], sparsity=1e-3)
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
        losses.append(parts.mse)
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_save_and_load_give_the_same_transcoder(tmp_path):
    clt = _clt().float()
    clt.save(tmp_path / "clt")
    again = CrossLayerTranscoder.load(tmp_path / "clt")
    assert again.config == clt.config
    x = torch.randn(4, 3, 8)
    torch.testing.assert_close(again(x)[0], clt(x)[0])


def _documents(n: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [
        torch.cat(
            [torch.tensor([0]), torch.randint(1, 256, (int(torch.randint(8, 40, (1,), generator=g)),), generator=g)]
        )
        for _ in range(n)
    ]


def test_streamed_training_lowers_the_loss_and_resume_equals_uninterrupted(tmp_path):
    from workbench.clt.training.train import TrainSettings, block_documents, train_clt

    model = tiny_model("tiny-gated")
    docs = _documents()
    config = CLTConfig(n_layers=2, d_model=64, n_features=64, model="tiny-gated")
    settings = TrainSettings(tokens=64 * 30, batch_tokens=64, block_documents=8, sparsity=1e-3, checkpoint_every=4)
    assert sorted(sum((block_documents(24, 8, k, 0) for k in range(3)), [])) == list(
        range(24)
    )  # a pass is a permutation
    whole, state = train_clt(model, docs, config, settings, show_progress=False)
    assert state.block >= 2  # the stream went through several blocks
    mse = [entry["mse"] for entry in state.log]
    assert sum(mse[-5:]) < sum(mse[:5])

    class Interrupt(Exception):
        pass

    def stop_at_10(step, entry):
        if step == 10:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_clt(model, docs, config, settings, folder=tmp_path, show_progress=False, on_step=stop_at_10)
    resumed, again = train_clt(model, docs, config, settings, folder=tmp_path, show_progress=False)
    assert again.log == state.log
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="other settings"):
        train_clt(
            model, docs, config, TrainSettings(tokens=64 * 31, batch_tokens=64), folder=tmp_path, show_progress=False
        )
    with pytest.raises(ValueError, match="Make the CLTConfig from this model"):
        train_clt(model, docs, CLTConfig(n_layers=3, d_model=64, n_features=8), settings, show_progress=False)


def test_a_subset_trains_its_layers_only_and_the_replacement_keeps_the_others(tmp_path):
    """Layers (1,) of a 2-layer model: training leaves layer 0's parameters zero (and everything
    finite), quality is measured on layer 1 only, and the replacement model keeps layer 0's MLP."""
    from workbench.clt.quality import layer_quality, replacement
    from workbench.clt.training.train import TrainSettings, train_clt
    from workbench.clt.transcoder import mlp_out_hook

    model = tiny_model("tiny-gated")
    config = CLTConfig(n_layers=2, d_model=64, n_features=32, layers=(1,))
    settings = TrainSettings(tokens=64 * 12, batch_tokens=64, block_documents=8, sparsity=1e-3)
    clt, state = train_clt(model, _documents(), config, settings, show_progress=False)
    assert all(p.isfinite().all() for p in clt.parameters())
    assert not clt.W_enc[0].any() and not clt.W_dec[0].any() and not clt.b_dec[0].any()
    assert state.log[-1]["mse"] < state.log[0]["mse"]
    assert [q.layer for q in layer_quality(model, clt, _documents(4), batch_tokens=64)] == [1]
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        _, plain = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_mlp_out"))
        with replacement(model, clt):
            _, replaced = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_mlp_out"))
    torch.testing.assert_close(replaced[mlp_out_hook(0)], plain[mlp_out_hook(0)], rtol=0, atol=0)
    assert not torch.allclose(replaced[mlp_out_hook(1)], plain[mlp_out_hook(1)])


def test_replacement_model_equals_an_unrolled_literal_and_leaves_no_hooks():
    """Replace the MLP outputs one layer at a time with fixed tensors, rerunning the model after
    each: the last run's logits equal the replacement model's single pass."""
    from workbench.clt.quality import replacement
    from workbench.clt.transcoder import mlp_in_hook, mlp_out_hook

    model = tiny_model("tiny-gated")
    clt = CrossLayerTranscoder(CLTConfig(n_layers=2, d_model=64, n_features=32), seed=3)
    with torch.no_grad():
        clt.log_threshold.fill_(-6.0)  # most features active, so the reconstruction matters
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(5))
    fixed, acts = {}, []
    with torch.no_grad():
        for layer in range(2):
            hooks = [(mlp_out_hook(k), lambda out, hook, v=v: v) for k, v in fixed.items()]
            with model.hooks(fwd_hooks=hooks):
                _, cache = model.run_with_cache(tokens)
            acts.append(clt.encode_layer(cache[mlp_in_hook(layer)], layer))
            fixed[layer] = clt.decode_layer(acts, layer)
            fixed[layer][:, 0] = cache[mlp_out_hook(layer)][:, 0]  # BOS keeps the model's own MLP output
        with model.hooks(fwd_hooks=[(mlp_out_hook(k), lambda out, hook, v=v: v) for k, v in fixed.items()]):
            literal = model(tokens)
        with replacement(model, clt):
            replaced = model(tokens)
        original = model(tokens)
    torch.testing.assert_close(replaced, literal)
    assert not torch.allclose(replaced, original, atol=1e-3)
    torch.testing.assert_close(replaced[:, 0], original[:, 0])  # BOS's own logits: nothing replaced before it
    with torch.no_grad(), replacement(model, clt, keep_bos=False):
        assert not torch.allclose(model(tokens)[:, 0], original[:, 0], atol=1e-4)
    with pytest.raises(RuntimeError), replacement(model, clt):
        raise RuntimeError("interrupted")
    assert all(not model.hook_dict[mlp_out_hook(k)].fwd_hooks for k in range(2))
    torch.testing.assert_close(model(tokens), original)


def test_layer_quality_matches_its_definition():
    from workbench.clt.quality import layer_quality, replacement_loss

    model = tiny_model("tiny-gated")
    docs = _documents(6)
    clt = CrossLayerTranscoder(CLTConfig(n_layers=2, d_model=64, n_features=32), seed=1)
    quality = layer_quality(model, clt, docs, batch_tokens=64)
    rows = [mlp_io(model, d[None])[0][1:] for d in docs], [mlp_io(model, d[None])[1][1:] for d in docs]
    x, y = torch.cat(rows[0]), torch.cat(rows[1])
    with torch.no_grad():
        recon, acts = clt(x)
    for layer in range(2):
        fvu = (recon[:, layer] - y[:, layer]).pow(2).sum() / (y[:, layer] - y[:, layer].mean(0)).pow(2).sum()
        assert quality[layer].fvu == pytest.approx(fvu.item(), rel=1e-4)
        assert quality[layer].l0 == pytest.approx((acts[:, layer] > 0).sum(-1).float().mean().item(), rel=1e-5)
        assert quality[layer].dead == pytest.approx(1 - (acts[:, layer] > 0).any(0).float().mean().item())
    original, replaced = replacement_loss(model, clt, docs, batch_tokens=64)
    assert original > 0 and replaced != original
