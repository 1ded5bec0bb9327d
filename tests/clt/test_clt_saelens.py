"""Per-layer transcoders to and from SAELens, held to SAELens's own classes: an exported layer,
loaded by SAELens, encodes and decodes as our layer does; SAELens folders loaded back (ours, a
plain ReLU transcoder, thresholds <= 0, a norm weight folded in) match SAELens; skip transcoders
both ways (ours exported as a ``jumprelu_skip_transcoder``, SAELens's own loaded as ours, with and
without a norm weight folded in); what cannot map exactly is refused with a message that names the
fix."""

from __future__ import annotations

import pytest
import torch
from sae_lens import SAE, JumpReLUTranscoder, StandardSAE, StandardSAEConfig, Transcoder
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.transcoder import (
    JumpReLUSkipTranscoder,
    JumpReLUSkipTranscoderConfig,
    JumpReLUTranscoderConfig,
    TranscoderConfig,
)

from workbench.clt.formats.saelens import SAELensError, export_saelens, load_saelens
from workbench.clt.transcoder import (
    CLTConfig,
    CrossLayerTranscoder,
    mlp_in_hook,
    mlp_out_hook,
)
from workbench.errors import WorkbenchError

L, D, F = 3, 16, 32


def _clt(per_layer: bool = True, skip: bool = False) -> CrossLayerTranscoder:
    """Random weights, biases, thresholds in [0.01, 0.3] and scales other than 1 (the input scales
    powers of two, so folding them into W_enc is exact and no feature flips at its threshold); with
    ``skip`` a random skip."""
    clt = CrossLayerTranscoder(
        CLTConfig(n_layers=L, d_model=D, n_features=F, per_layer=per_layer, model="tiny", skip=skip), seed=1
    )
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        clt.b_enc.copy_(torch.randn(L, F, generator=g) * 0.2)
        clt.b_dec.copy_(torch.randn(L, D, generator=g) * 0.1)
        clt.log_threshold.copy_((torch.rand(L, F, generator=g) * 0.29 + 0.01).log())
        clt.in_scale.copy_(torch.tensor([0.5, 2.0, 4.0]))
        clt.out_scale.copy_(torch.tensor([3.0, 0.7, 0.25]))
        if clt.W_skip is not None:
            clt.W_skip.copy_(torch.randn(L, D, D, generator=g) * 0.3)
    return clt.eval()


def _x(n: int = 64) -> torch.Tensor:
    return torch.randn(n, L, D, generator=torch.Generator().manual_seed(3))


def _save(folder, cls, cfg_cls, layer: int, d_sae: int = F, hook_in: str | None = None, **weights):
    """A SAELens transcoder (or SAE) of class ``cls`` at ``layer`` with random weights, saved by SAELens."""
    meta = SAEMetadata(model_name="tiny", hook_name=hook_in or mlp_in_hook(layer), hook_name_out=mlp_out_hook(layer))
    extra = {} if cfg_cls is StandardSAEConfig else {"d_out": D, "apply_b_dec_to_input": False}
    sae = cls(cfg_cls(d_in=D, d_sae=d_sae, metadata=meta, **extra))
    g = torch.Generator().manual_seed(10 + layer)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, value in weights.items():
            getattr(sae, name).copy_(value)
    sae.save_model(folder)
    return sae


def _acts(clt: CrossLayerTranscoder, x: torch.Tensor) -> list[torch.Tensor]:
    return [clt.encode_layer(x[:, l], l) for l in range(L)]


@torch.no_grad()
def test_exported_layers_load_in_saelens_and_match(tmp_path):
    clt, x = _clt(), _x()
    acts = _acts(clt, x)
    for l in range(L):
        sae = SAE.load_from_disk(export_saelens(clt, l, tmp_path / f"layer_{l}"))
        assert isinstance(sae, JumpReLUTranscoder)
        assert sae.cfg.metadata.hook_name == f"blocks.{l}.ln2.hook_normalized"
        assert sae.cfg.metadata.hook_name_out == f"blocks.{l}.hook_mlp_out"
        assert sae.cfg.metadata.model_name == "tiny" and not sae.cfg.apply_b_dec_to_input
        assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.d_out) == (D, F, D)
        active = (acts[l] > 0).float().mean().item()
        assert 0.2 < active < 0.8  # a good share of features fire, and not all of them
        torch.testing.assert_close(sae.encode(x[:, l]), acts[l], rtol=0, atol=0)
        ours = clt.decode_layer(acts, l)
        torch.testing.assert_close(sae.decode(acts[l]), ours, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x[:, l]), ours, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_round_trip_through_saelens_folders(tmp_path):
    clt, x = _clt(), _x()
    folders = [export_saelens(clt, l, tmp_path / f"layer_{l}") for l in range(L)]
    back = load_saelens(folders)
    assert back.config == CLTConfig(n_layers=L, d_model=D, n_features=F, per_layer=True, model="tiny")
    assert load_saelens(folders, model_name="other").config.model == "other"
    recon, acts = clt(x)
    recon_back, acts_back = back(x)
    torch.testing.assert_close(acts_back, acts, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(recon_back, recon, rtol=1e-5, atol=1e-5)
    ours = _acts(back, x)
    for l in range(L):
        torch.testing.assert_close(back.decode_layer(ours, l), clt.decode_layer(_acts(clt, x), l), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_relu_transcoders_and_thresholds_at_or_below_zero_load_exactly(tmp_path):
    x = _x()
    threshold = torch.linspace(-0.5, 0.5, F)  # SAELens: relu first, so <= 0 acts as 0
    saes = [
        _save(tmp_path / "0", Transcoder, TranscoderConfig, 0),
        _save(tmp_path / "1", JumpReLUTranscoder, JumpReLUTranscoderConfig, 1, threshold=threshold),
        _save(tmp_path / "2", JumpReLUTranscoder, JumpReLUTranscoderConfig, 2),
    ]
    clt = load_saelens([tmp_path / "0", tmp_path / "1", tmp_path / "2"])
    acts = _acts(clt, x)
    for l, sae in enumerate(saes):
        torch.testing.assert_close(acts[l], sae.encode(x[:, l]), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(clt.decode_layer(acts, l), sae(x[:, l]), rtol=1e-5, atol=1e-5)
    assert (acts[0] > 0).any() and (acts[0] > 0).float().mean() < 1


@torch.no_grad()
def test_a_transcoder_reading_the_norms_output_needs_its_weight(tmp_path):
    x, w = _x(), torch.rand(L, D) + 0.5
    saes = [
        _save(tmp_path / str(l), JumpReLUTranscoder, JumpReLUTranscoderConfig, l, hook_in=f"blocks.{l}.hook_mlp_in")
        for l in range(L)
    ]
    folders = [tmp_path / str(l) for l in range(L)]
    with pytest.raises(SAELensError, match="norm_weights"):
        load_saelens(folders)
    clt = load_saelens(folders, norm_weights=list(w))
    for l, sae in enumerate(saes):
        torch.testing.assert_close(clt.encode_layer(x[:, l], l), sae.encode(x[:, l] * w[l]), rtol=1e-5, atol=1e-5)


def test_exporting_a_cross_layer_transcoder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--per-layer"):
        export_saelens(_clt(per_layer=False), 0, tmp_path)


def test_loading_refuses_what_does_not_map(tmp_path):
    good = [export_saelens(_clt(), l, tmp_path / f"layer_{l}") for l in range(L)]
    missing = tmp_path / "nowhere"
    with pytest.raises(WorkbenchError, match="nowhere"):
        load_saelens([good[0], missing, good[2]])
    _save(tmp_path / "sae", StandardSAE, StandardSAEConfig, 1)
    with pytest.raises(SAELensError, match="not a transcoder"):
        load_saelens([good[0], tmp_path / "sae", good[2]])
    _save(tmp_path / "wide", JumpReLUTranscoder, JumpReLUTranscoderConfig, 1, d_sae=2 * F)
    with pytest.raises(SAELensError, match="same number of features"):
        load_saelens([good[0], tmp_path / "wide", good[2]])
    with pytest.raises(SAELensError, match="layer order"):
        load_saelens([good[1], good[0], good[2]])


@torch.no_grad()
def test_a_skip_transcoder_exports_to_saelens_and_matches(tmp_path):
    clt, x = _clt(skip=True), _x()
    acts = _acts(clt, x)
    for l in range(L):
        sae = SAE.load_from_disk(export_saelens(clt, l, tmp_path / f"layer_{l}"))
        assert isinstance(sae, JumpReLUSkipTranscoder) and sae.cfg.architecture() == "jumprelu_skip_transcoder"
        assert 0.2 < (acts[l] > 0).float().mean() < 0.8
        torch.testing.assert_close(sae.encode(x[:, l]), acts[l], rtol=0, atol=0)
        ours = clt.reconstruct_layer(x[:, l], acts, l)
        torch.testing.assert_close(sae(x[:, l]), ours, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(sae(x[:, l]), clt.decode_layer(acts, l), atol=1e-2)  # the skip matters
    back = load_saelens([tmp_path / f"layer_{l}" for l in range(L)])
    assert back.config.skip
    torch.testing.assert_close(back(x)[0], clt(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("folded", [False, True], ids=["hook_normalized", "hook_mlp_in"])
@torch.no_grad()
def test_saelens_skip_transcoders_load_as_ours(tmp_path, folded):
    """SAELens's own JumpReLUSkipTranscoder (``x @ W_skip.T``), saved by SAELens, between two plain
    layers; read at the norm's output its weight is folded into the skip as into the encoder."""
    x, w = _x(), torch.rand(L, D) + 0.5
    classes = [
        (JumpReLUTranscoder, JumpReLUTranscoderConfig),
        (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
        (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
    ]
    hook = "blocks.{}.hook_mlp_in" if folded else None
    saes = [
        _save(tmp_path / str(l), cls, cfg, l, hook_in=hook and hook.format(l)) for l, (cls, cfg) in enumerate(classes)
    ]
    clt = load_saelens([tmp_path / str(l) for l in range(L)], norm_weights=list(w) if folded else None)
    assert clt.config.skip and clt.W_skip is not None and not clt.W_skip[0].any()
    acts = _acts(clt, x)
    for l, sae in enumerate(saes):
        theirs_in = x[:, l] * w[l] if folded else x[:, l]
        torch.testing.assert_close(acts[l], sae.encode(theirs_in), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(clt.reconstruct_layer(x[:, l], acts, l), sae(theirs_in), rtol=1e-5, atol=1e-5)
    assert (acts[1] > 0).any() and (acts[1] > 0).float().mean() < 1
