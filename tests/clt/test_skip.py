"""Skip transcoders and the training levers, held to their definitions.

The closed-form skip against a least-squares solve; the skip transcoder's forward against a literal
per-layer sum; training: the skip fitted on the first block and held, the rows read once and
reused, the L0 controller, the tied encoder, and a resumed run equal to an uninterrupted one with
all of them on.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench.clt.skip import AffineMoments, fit_skip, moments_of
from workbench.clt.training.rows import read_block, read_rows
from workbench.clt.training.train import L0_GAIN, TrainSettings, steer_lambdas, train_clt
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.models.loading import tiny_model


def _rows(n: int = 300, layers: int = 2, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, layers, d, generator=g, dtype=torch.float64) * 2 + 0.5
    W = torch.randn(layers, d, d, generator=g, dtype=torch.float64)
    y = torch.einsum("rld,lde->rle", x, W) + torch.randn(layers, d, generator=g, dtype=torch.float64)
    return x, y + 0.3 * torch.randn(y.shape, generator=g, dtype=torch.float64)  # noise: no exact fit


def test_closed_form_skip_equals_a_least_squares_solve():
    x, y = _rows()
    moments = moments_of((x[i : i + 70], y[i : i + 70]) for i in range(0, len(x), 70))  # streamed in chunks
    assert moments.rows == len(x)
    W, b = moments.solve(ridge=0.0)
    for layer in range(x.shape[1]):
        design = torch.cat([x[:, layer], torch.ones(len(x), 1, dtype=x.dtype)], 1)
        want = torch.linalg.lstsq(design, y[:, layer]).solution
        torch.testing.assert_close(W[layer].double(), want[:-1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b[layer].double(), want[-1], rtol=1e-4, atol=1e-5)


def test_the_ridge_shrinks_the_map_but_not_the_bias_and_keeps_a_constant_input_solvable():
    x, y = _rows()
    x[:, :, 0] = 1.0  # a direction that never varies: singular without the ridge
    moments = AffineMoments(2, 6, 6)
    moments.add(x, y)
    W, b = moments.solve()
    assert W.isfinite().all() and b.isfinite().all()
    fitted = torch.einsum("rld,lde->rle", x.float(), W) + b
    plain = ((y - y.mean(0)) ** 2).sum()
    assert float(((fitted.double() - y) ** 2).sum()) < 0.1 * float(plain)


def _skip_clt(layers: tuple[int, ...] = ()) -> CrossLayerTranscoder:
    clt = CrossLayerTranscoder(CLTConfig(3, 6, 10, per_layer=True, skip=True, layers=layers), seed=1).double()
    with torch.no_grad():
        assert clt.W_skip is not None
        clt.W_skip.normal_(0, 0.5)
        clt.b_enc.normal_(0, 0.5)
        clt.b_dec.normal_(0, 0.1)
        clt.out_scale.copy_(torch.tensor([2.0, 1.0, 0.5]))
    clt.clear_uncovered()
    return clt


@pytest.mark.parametrize("layers", [(), (0, 2)])
def test_skip_forward_is_decoded_features_plus_the_literal_skip(layers):
    clt = _skip_clt(layers)
    assert clt.W_skip is not None
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    recon, acts = clt(x)
    for layer in range(3):
        want = torch.zeros(5, 6, dtype=torch.float64)
        if clt.config.covers(layer):
            want = clt.decode_layer([acts[:, s] for s in range(layer + 1)], layer) + x[:, layer] @ clt.W_skip[layer]
        torch.testing.assert_close(recon[:, layer], want)
        torch.testing.assert_close(
            clt.reconstruct_layer(x[:, layer], [acts[:, s] for s in range(layer + 1)], layer),
            want if clt.config.covers(layer) else torch.zeros_like(want),
        )
    assert "skip transcoder" in clt.config.kind


def test_fit_skip_writes_the_map_and_the_bias_in_scaled_units():
    x, y = _rows(layers=3)
    clt = CrossLayerTranscoder(CLTConfig(3, 6, 4, per_layer=True, skip=True)).double()
    clt.set_scales(x, y)
    fit_skip(clt, moments_of([(x, y)]))
    with torch.no_grad():
        clt.W_enc.zero_()  # no features: the reconstruction is the affine map alone
        recon, _ = clt(x)
    W, b = moments_of([(x, y)]).solve()
    torch.testing.assert_close(recon, torch.einsum("rld,lde->rle", x, W.double()) + b.double(), rtol=1e-5, atol=1e-5)


def test_fit_skip_refuses_a_transcoder_without_a_skip():
    clt = CrossLayerTranscoder(CLTConfig(3, 6, 4))
    with pytest.raises(ValueError, match="skip=True"):
        fit_skip(clt, moments_of([_rows(layers=3)]))


def test_a_skip_transcoder_saves_and_loads(tmp_path):
    clt = _skip_clt().float()
    clt.save(tmp_path / "t")
    again = CrossLayerTranscoder.load(tmp_path / "t")
    x = torch.randn(4, 3, 6)
    torch.testing.assert_close(again(x)[0], clt(x)[0])


def test_steer_lambdas_moves_towards_the_target_and_is_bounded():
    up, down, same = steer_lambdas([1.0, 1.0, 1.0], [100.0, 10.0, 50.0], 50.0)
    assert up == pytest.approx(math.exp(L0_GAIN)) and down == pytest.approx(math.exp(-0.8 * L0_GAIN))
    assert same == 1.0


def _documents(n: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [
        torch.cat(
            [torch.tensor([0]), torch.randint(1, 256, (int(torch.randint(8, 30, (1,), generator=g)),), generator=g)]
        )
        for _ in range(n)
    ]


def test_reused_rows_are_the_documents_rows_read_once_in_half_precision():
    model = tiny_model("tiny-gated")
    docs = _documents()
    settings = TrainSettings(reuse=True, block_documents=4)
    first = read_block(model, docs, settings, 0)
    x, y = read_rows(model, docs, settings.forward_tokens, None)
    assert first.x.dtype == torch.float16 and len(first) == len(x)  # every document in one block
    torch.testing.assert_close(first.x.float(), x, rtol=1e-3, atol=1e-3)
    again = read_block(model, docs, settings, 1, kept=first)
    assert again.x is first.x and not torch.equal(again.order, first.order)  # the same rows, a new order


def test_training_with_every_lever_fits_the_skip_and_resumes_exactly(tmp_path):
    model = tiny_model("tiny-gated")
    docs = _documents()
    config = CLTConfig(2, 64, 32, per_layer=True, skip=True, model="tiny-gated")
    settings = TrainSettings(
        tokens=32 * 24,
        batch_tokens=32,
        sparsity=1e-2,
        sparsity_warmup=0.25,
        reuse=True,
        target_l0=2.0,
        tied_init=True,
        checkpoint_every=5,
    )
    whole, state = train_clt(model, docs, config, settings, show_progress=False)
    first = read_block(model, docs, settings, 0, [0, 1])
    x, y = first.rows(0, len(first))
    assert whole.W_skip is not None
    want, _ = moments_of([(x, y)]).solve()
    torch.testing.assert_close(whole.W_skip, want, rtol=1e-4, atol=1e-5)  # fitted on the rows and held through training
    assert state.block >= 1 and state.lambdas != [1.0, 1.0]  # passes over the kept rows; the controller moved

    class Interrupt(Exception):
        pass

    def stop(step: int, entry: dict) -> None:
        if step == 13:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_clt(model, docs, config, settings, tmp_path, show_progress=False, on_step=stop)
    resumed, again = train_clt(model, docs, config, settings, tmp_path, show_progress=False)
    assert again.lambdas == state.lambdas
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
