"""Skip transcoders in the formats of ours, circuit-tracer and featflow: circuit-tracer's per-layer
``W_skip`` (which adds ``x @ W_skip.T``) made by hand and held to a literal loop, at
``ln2.hook_normalized`` and at ``mlp.hook_in`` (the norm's weight and bias folded into the skip, its
constant into the decoder bias); a skip transcoder of ours written and read back to the same
reconstructions; and the layouts that cannot hold a skip refuse to write one. (SAELens:
``test_clt_saelens.py``; Gemma Scope 2: ``test_gemma_scope.py``.)"""

from __future__ import annotations

import pytest
import torch
from conftest import known_skip_clt
from safetensors.torch import load_file, save_file

from workbench.clt.formats import CheckpointError, load_transcoder, save_transcoder
from workbench.clt.formats.circuit_tracer import load_circuit_tracer
from workbench.clt.transcoder import CrossLayerTranscoder

L, D, F = 3, 16, 8


def _skip_clt(seed: int = 1, **kind) -> CrossLayerTranscoder:
    """Every parameter set, a random skip among them (``known_skip_clt``)."""
    return known_skip_clt(L, D, F, "tiny", seed, 0.3, **kind)


def _x(n: int = 64) -> torch.Tensor:
    return torch.randn(n, L, D, generator=torch.Generator().manual_seed(3))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _ct_skip_files(folder, hook_in: str = "ln2.hook_normalized") -> list[dict]:
    """circuit-tracer per-layer skip transcoders by hand: W_enc [F, d] (F.linear), W_skip [d, d]."""
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(21)
    layers = []
    for i in range(L):
        t = {
            "W_enc": torch.randn(F, D, generator=g) / 4,
            "b_enc": torch.randn(F, generator=g) * 0.3,
            "W_dec": torch.randn(F, D, generator=g) * 0.2,
            "b_dec": torch.randn(D, generator=g) * 0.1,
            "activation_function.threshold": torch.rand(F, generator=g) * 0.3,
            "W_skip": torch.randn(D, D, generator=g) * 0.3,
        }
        save_file(t, folder / f"layer_{i}.safetensors")
        layers.append(t)
    lines = ["model_kind: transcoder_set", f"feature_input_hook: {hook_in}", "feature_output_hook: hook_mlp_out"]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")
    return layers


@torch.no_grad()
def _ct_literal(layers: list[dict], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """circuit-tracer's per-layer forward: ``decode(acts) + compute_skip(x)``, ``compute_skip = x @ W_skip.T``."""
    acts, recon = [], []
    for i, t in enumerate(layers):
        pre = torch.nn.functional.linear(x[:, i], t["W_enc"], t["b_enc"])
        act = pre * (pre > t["activation_function.threshold"])
        acts.append(act)
        recon.append(act @ t["W_dec"] + t["b_dec"] + x[:, i] @ t["W_skip"].T)
    return torch.stack(recon, dim=1), torch.stack(acts, dim=1)


@torch.no_grad()
def test_circuit_tracer_skip_files_read_as_their_literal_forward(tmp_path):
    layers = _ct_skip_files(tmp_path / "ct")
    clt = load_transcoder(tmp_path / "ct")
    assert clt.config.skip and clt.config.per_layer
    x = _x()
    want_recon, want_acts = _ct_literal(layers, x)
    recon, acts = clt(x)
    assert (acts > 0).float().mean() > 0.1
    _close(acts, want_acts)
    _close(recon, want_recon)
    for i in range(L):  # the replacement model's per-layer path
        _close(clt.reconstruct_layer(x[:, i], list(acts.unbind(1)), i), want_recon[:, i])
    no_skip = [{**t, "W_skip": torch.zeros(D, D)} for t in layers]
    assert not torch.allclose(recon, _ct_literal(no_skip, x)[0], atol=1e-2)  # the skip matters


@torch.no_grad()
def test_a_skip_at_mlp_hook_in_has_the_norm_folded_in(tmp_path):
    """Reading the norm's output ``n * w + b``: ``W_skip`` becomes ``w[:, None] * W_skip.T`` and
    ``b @ W_skip.T`` joins the decoder bias."""
    layers = _ct_skip_files(tmp_path / "ct", hook_in="mlp.hook_in")
    g = torch.Generator().manual_seed(5)
    norms = [(torch.rand(D, generator=g) + 0.5, torch.randn(D, generator=g) * 0.5) for _ in range(L)]
    clt = load_circuit_tracer(tmp_path / "ct", norms=norms)
    n = _x()
    norm_out = torch.stack([n[:, l] * w + b for l, (w, b) in enumerate(norms)], dim=1)
    want_recon, want_acts = _ct_literal(layers, norm_out)
    recon, acts = clt(n)
    _close(acts, want_acts)
    _close(recon, want_recon)


@pytest.mark.parametrize("kind", ["workbench", "circuit-tracer"])
@pytest.mark.parametrize("layers", [(), (0, 2)], ids=["all-layers", "some-layers"])
@torch.no_grad()
def test_a_per_layer_skip_transcoder_round_trips(tmp_path, kind, layers):
    clt = _skip_clt(per_layer=True, layers=layers)
    back = load_transcoder(save_transcoder(clt, tmp_path / kind, kind))
    assert back.config.skip
    x = _x()
    recon, acts = clt(x)
    recon_back, acts_back = back(x)
    assert (acts > 0).float().mean() > 0.1
    _close(acts_back, acts)
    _close(recon_back, recon)
    if kind == "circuit-tracer":  # circuit-tracer's own orientation: x @ W_skip.T
        torch.testing.assert_close(load_file(tmp_path / kind / "layer_1.safetensors")["W_skip"], clt.W_skip[1].T)


@torch.no_grad()
def test_a_cross_layer_skip_transcoder_round_trips_as_ours(tmp_path):
    clt = _skip_clt(window=1)
    back = load_transcoder(save_transcoder(clt, tmp_path / "ours", "workbench"))
    assert back.config == clt.config
    torch.testing.assert_close(back(_x())[0], clt(_x())[0], rtol=0, atol=0)


def test_layouts_without_a_skip_refuse_to_write_one(tmp_path):
    with pytest.raises(CheckpointError, match="featflow's CLT .* has no skip connection.*Save it as ours"):
        save_transcoder(_skip_clt(per_layer=True), tmp_path / "ff", "featflow")
    with pytest.raises(CheckpointError, match="circuit-tracer 0.5's CLT files .* hold no skip.*per-layer skip"):
        save_transcoder(_skip_clt(), tmp_path / "ct", "circuit-tracer")
    assert not (tmp_path / "ct").exists() and not (tmp_path / "ff").exists()
