"""Gemma Scope 2's transcoders, as a user downloads them, on a tiny Gemma 3 (3 layers, RMSNorm
weights far from 1). Files made by hand in both layouts (``transcoder_all`` per-layer folders with
an affine skip, and a ``clt`` variant with a cross-layer ``w_dec``) are held to the literal Gemma
Scope 2 forward computed from the raw tensors on the model's real MLP inputs (the pre-feedforward
norm's output, taken from the norm module itself), ours reading ``ln2.hook_normalized``; every kind
of ours (skip or not, per-layer, on some layers, cross-layer, windowed) is written and read back;
and the refusals: several variants, an unknown variant, another model, no model, one layer's
folder, SAE folders."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import known_skip_clt
from safetensors.torch import save_file

from workbench.analyses import clt_train
from workbench.clt.formats import CheckpointError, detect, load_transcoder, save_transcoder
from workbench.clt.formats._common import model_facts
from workbench.clt.formats.gemma_scope import load_gemma_scope, save_gemma_scope
from workbench.clt.runs.transcoder import load_given
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.errors import WorkbenchError
from workbench.models.families import save_family
from workbench.models.loading import load_model
from workbench.runs.job import run
from workbench.runs.options import RunOptions

L, D, F = 3, 32, 24
VARIANT = "width_16k_l0_small_affine"
TEXTS = ["In the beginning God created the heaven and the earth.", "Au commencement, Dieu créa les cieux."]


@pytest.fixture(scope="module")
def gemma3_folder(tmp_path_factory):
    """A tiny Gemma 3's folder (the family's quirks, 3 layers)."""
    folder = tmp_path_factory.mktemp("gemma3")
    layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    save_family("gemma3", folder, num_hidden_layers=L, layer_types=layer_types)
    return folder


@pytest.fixture(scope="module")
def gemma3(gemma3_folder):
    """The tiny Gemma 3, whose ln2.w are not 1."""
    model = load_model(str(gemma3_folder))
    assert (model.cfg.n_layers, model.cfg.d_model) == (L, D)
    assert all((block.ln2.w - 1).abs().max() > 0.1 for block in model.blocks)
    return model


@pytest.fixture(scope="module")
def hooks(gemma3):
    """Per row (token position), every layer's ``ln2.hook_normalized``, the norm module's own output
    (Gemma Scope 2's input) and ``hook_mlp_out`` (its target)."""
    outputs = {}
    handles = [
        block.ln2.register_forward_hook(lambda _m, _i, out, l=l: outputs.__setitem__(l, out))
        for l, block in enumerate(gemma3.blocks)
    ]
    try:
        _, cache = gemma3.run_with_cache(gemma3.to_tokens(TEXTS))
    finally:
        for handle in handles:
            handle.remove()

    def rows(values):
        return torch.stack([v.reshape(-1, D) for v in values], dim=1).detach()

    normalized = rows(cache[f"blocks.{l}.ln2.hook_normalized"] for l in range(L))
    norm_out = rows(outputs[l] for l in range(L))
    torch.testing.assert_close(norm_out, normalized * torch.stack([b.ln2.w for b in gemma3.blocks]).detach())
    return normalized, norm_out, rows(cache[f"blocks.{l}.hook_mlp_out"] for l in range(L))


def _raw(seed: int, w_dec_shape: tuple[int, ...], affine: bool = True) -> dict[str, torch.Tensor]:
    """One parameter file's tensors, random; two features with thresholds <= 0 (a ReLU after SAELens's)."""
    g = torch.Generator().manual_seed(seed)
    t = {
        "w_enc": torch.randn(D, F, generator=g) / math.sqrt(D),
        "b_enc": torch.randn(F, generator=g) * 0.3,
        "threshold": torch.cat([torch.tensor([-0.2, 0.0]), torch.rand(F - 2, generator=g) * 0.4 + 0.05]),
        "w_dec": torch.randn(*w_dec_shape, generator=g) * 0.2,
        "b_dec": torch.randn(D, generator=g) * 0.1,
    }
    if affine:
        t["affine_skip_connection"] = torch.randn(D, D, generator=g) * 0.2
    return t


def _transcoder_all(folder, variant: str = VARIANT, layers=range(L), affine: bool = True, seed: int = 0) -> dict:
    """``transcoder_all`` as downloaded: ``layer_{i}_{variant}/params.safetensors``."""
    raw = {}
    for l in layers:
        raw[l] = _raw(seed + l, (F, D), affine)
        (folder / f"layer_{l}_{variant}").mkdir(parents=True)
        save_file(raw[l], folder / f"layer_{l}_{variant}" / "params.safetensors")
    return raw


def _clt_variant(folder, triangular: bool = False, seed: int = 10) -> dict:
    """A ``clt/<variant>`` folder: ``params_layer_{i}.safetensors`` with ``w_dec [F, L, d]`` (or ``[F, L - i, d]``)."""
    folder.mkdir(parents=True)
    raw = {}
    for l in range(L):
        raw[l] = _raw(seed + l, (F, L - l, D) if triangular else (F, L, D))
        save_file(raw[l], folder / f"params_layer_{l}.safetensors")
    return raw


def _gs_act(x: torch.Tensor, t: dict) -> torch.Tensor:
    pre = x @ t["w_enc"] + t["b_enc"]
    return torch.relu(pre) * (pre > t["threshold"])


@torch.no_grad()
def _literal_per_layer(raw: dict, x: torch.Tensor) -> tuple[dict, dict]:
    """Gemma Scope 2's per-layer forward on the norm outputs ``x``: acts and outputs by layer."""
    acts = {l: _gs_act(x[:, l], t) for l, t in raw.items()}
    out = {l: acts[l] @ t["w_dec"] + t["b_dec"] + x[:, l] @ t["affine_skip_connection"] for l, t in raw.items()}
    return acts, out


@torch.no_grad()
def _literal_clt(raw: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gemma Scope 2's CLT as circuit-tracer runs it: source ``s`` writes target ``t >= s`` with
    ``w_dec[:, t]`` (``[:, t - s]`` when triangular); its earlier columns are never read."""
    acts = torch.stack([_gs_act(x[:, l], raw[l]) for l in range(L)], dim=1)
    out = torch.stack([raw[t]["b_dec"] + x[:, t] @ raw[t]["affine_skip_connection"] for t in range(L)], dim=1)
    for s in range(L):
        for t in range(s, L):
            column = t if raw[s]["w_dec"].shape[1] == L else t - s
            out[:, t] += acts[:, s] @ raw[s]["w_dec"][:, column]
    return out, acts


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_transcoder_all_reads_as_the_literal_forward_on_the_models_hooks(tmp_path, gemma3, hooks):
    normalized, norm_out, mlp_out = hooks
    raw = _transcoder_all(tmp_path / "transcoder_all")
    assert detect([tmp_path / "transcoder_all"]) == "gemma-scope-2"
    clt = load_transcoder(tmp_path / "transcoder_all", model_name="gemma3", model=gemma3)
    assert clt.config == CLTConfig(L, D, F, per_layer=True, model="gemma3", skip=True)
    want_acts, want_out = _literal_per_layer(raw, norm_out)
    recon, acts = clt(normalized)
    assert recon.shape == mlp_out.shape
    assert 0.1 < (acts > 0).float().mean() < 0.9
    for l in range(L):
        _close(acts[:, l], want_acts[l])
        _close(recon[:, l], want_out[l])
        _close(clt.reconstruct_layer(normalized[:, l], list(acts.unbind(1)), l), want_out[l])
    without = load_gemma_scope(tmp_path / "transcoder_all", [(torch.ones(D), None)] * L)
    assert not torch.allclose(without(normalized)[1], acts, atol=1e-3)  # the norm weight's fold matters


@torch.no_grad()
def test_some_layers_read_as_a_transcoder_on_those_layers(tmp_path, gemma3, hooks):
    normalized, norm_out, _ = hooks
    raw = _transcoder_all(tmp_path / "ta", layers=(0, 2), affine=False)
    clt = load_transcoder(tmp_path / "ta", model=gemma3)
    assert clt.config.covered == (0, 2) and not clt.config.skip
    recon, acts = clt(normalized)
    want_acts, want_out = _literal_per_layer(
        {l: {**t, "affine_skip_connection": torch.zeros(D, D)} for l, t in raw.items()}, norm_out
    )
    for l in (0, 2):
        _close(acts[:, l], want_acts[l])
        _close(recon[:, l], want_out[l])
    assert not recon[:, 1].any() and not acts[:, 1].any()


@pytest.mark.parametrize("triangular", [False, True], ids=["w_dec-every-layer", "w_dec-later-layers"])
@torch.no_grad()
def test_a_clt_variant_reads_cross_layer_as_the_literal_forward(tmp_path, gemma3, hooks, triangular):
    normalized, norm_out, _ = hooks
    raw = _clt_variant(tmp_path / "clt" / VARIANT, triangular)
    for source in (tmp_path / "clt", tmp_path / "clt" / VARIANT):  # the clt folder, or the variant's
        clt = load_transcoder(source, model=gemma3)
        assert clt.config == CLTConfig(L, D, F, skip=True)  # cross-layer, not summed into per-layer ones
        want_recon, want_acts = _literal_clt(raw, norm_out)
        recon, acts = clt(normalized)
        assert 0.1 < (acts > 0).float().mean() < 0.9
        _close(acts, want_acts)
        _close(recon, want_recon)


def _known(seed: int = 1, **kind) -> CrossLayerTranscoder:
    """Every parameter set, a random skip among them (``known_skip_clt``)."""
    return known_skip_clt(L, D, F, "gemma3", seed, 0.2, **kind)


KINDS = {
    "per-layer": {"per_layer": True},
    "per-layer subset": {"per_layer": True, "layers": (0, 2)},
    "cross-layer": {},
    "windowed": {"window": 1},
}


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
@torch.no_grad()
def test_every_kind_of_ours_round_trips_through_gemma_scope_files(tmp_path, gemma3, hooks, kind):
    normalized = hooks[0]
    clt = _known(**KINDS[kind])
    written = save_transcoder(clt, tmp_path / "gs", "gemma-scope-2", model=gemma3)
    names = sorted(p.name for p in (tmp_path / "gs").iterdir())
    per_layer = clt.config.targets(0) == 1
    assert names == (
        [f"layer_{l}_width_{F}_workbench_affine" for l in clt.config.covered]
        if per_layer
        else [f"width_{F}_workbench_affine"]
    )
    back = load_transcoder(written, model_name="gemma3", model=gemma3)
    assert back.config.covered == clt.config.covered and back.config.skip
    recon, acts = clt(normalized)
    recon_back, acts_back = back(normalized)
    assert (acts > 0).float().mean() > 0.1
    _close(acts_back, acts)
    _close(recon_back, recon)
    if per_layer:
        cfg = json.loads((tmp_path / "gs" / names[0] / "config.json").read_text())
        assert cfg["affine_connection"] and cfg["hf_hook_point_in"].endswith("pre_feedforward_layernorm.output")


@torch.no_grad()
def test_the_writer_divides_the_norm_out(tmp_path, gemma3, hooks):
    """The written files, run as Gemma Scope 2 runs them on the norm's output, give ours on ``hook_normalized``."""
    from safetensors.torch import load_file

    normalized, norm_out, _ = hooks
    clt = _known(per_layer=True)
    save_gemma_scope(clt, tmp_path, model_facts(gemma3)[0], variant="mine")
    raw = {l: load_file(tmp_path / f"layer_{l}_mine" / "params.safetensors") for l in range(L)}
    want_acts, want_out = _literal_per_layer(raw, norm_out)
    recon, acts = clt(normalized)
    for l in range(L):
        _close(want_acts[l], acts[:, l])
        _close(want_out[l], recon[:, l])


def test_several_variants_are_refused_unless_one_is_chosen(tmp_path, gemma3):
    _transcoder_all(tmp_path / "ta", VARIANT)
    _transcoder_all(tmp_path / "ta", "width_262k_l0_big", affine=False, seed=5)
    with pytest.raises(
        CheckpointError,
        match="2 Gemma Scope 2 variants: width_16k_l0_small_affine, width_262k_l0_big.*--clt-train-load-variant",
    ):
        load_transcoder(tmp_path / "ta", model=gemma3)
    assert not load_transcoder(tmp_path / "ta", model=gemma3, variant="width_262k_l0_big").config.skip
    assert load_transcoder(tmp_path / "ta", model=gemma3, variant=VARIANT).config.skip
    with pytest.raises(CheckpointError, match="no Gemma Scope 2 variant 'width_1m'; it holds width_16k"):
        load_transcoder(tmp_path / "ta", model=gemma3, variant="width_1m")
    _clt_variant(tmp_path / "clt" / "width_262k_l0_medium_affine")
    _clt_variant(tmp_path / "clt" / "width_16k_l0_medium")
    with pytest.raises(
        CheckpointError, match="2 Gemma Scope 2 variants: width_16k_l0_medium, width_262k_l0_medium_affine"
    ):
        load_transcoder(tmp_path / "clt", model=gemma3)
    assert not load_transcoder(tmp_path / "clt", model=gemma3, variant="width_16k_l0_medium").config.per_layer


def test_clt_train_load_takes_the_folder_and_the_variant(tmp_path, gemma3):
    _transcoder_all(tmp_path / "ta", VARIANT)
    _transcoder_all(tmp_path / "ta", "width_262k_l0_big", affine=False, seed=5)
    with pytest.raises(WorkbenchError, match="2 Gemma Scope 2 variants"):
        load_given(str(tmp_path / "ta"), gemma3, "gemma3")
    clt = load_given(str(tmp_path / "ta"), gemma3, "gemma3", variant=VARIANT)
    assert clt.config.model == "gemma3" and clt.config.skip and clt.config.per_layer
    save_transcoder(_known(), tmp_path / "ours", "workbench")
    with pytest.raises(
        WorkbenchError, match="picks one of the Gemma Scope 2 transcoders.*workbench files; drop the variant"
    ):
        load_given(str(tmp_path / "ours"), gemma3, "gemma3", variant=VARIANT)


def test_clt_train_load_runs_gemma_scope_files_to_the_numbers_of_ours(tmp_path, gemma3_folder, gemma3):
    clt = _known(per_layer=True)
    clt.config = dataclasses.replace(clt.config, model="")  # the model's name is its folder's
    save_transcoder(clt, tmp_path / "gs", "gemma-scope-2", model=gemma3)
    save_transcoder(clt, tmp_path / "ours", "workbench")
    results = {}
    for name in ("ours", "gs"):
        only = {"clt-train": clt_train.Options(load=str(tmp_path / name), heldout=3)}
        options = RunOptions(model=str(gemma3_folder), languages=("en", "de"))
        run(options, only, tmp_path / f"run-{name}", show_progress=False)
        results[name] = clt_train.Result.load(tmp_path / f"run-{name}")
    ours, theirs = results["ours"].table(), results["gs"].table()
    assert any(row["l0"] > 0 for row in ours)
    for mine, other in zip(ours, theirs):
        assert mine["l0"] == pytest.approx(other["l0"], abs=1e-6)
        assert mine["fvu"] == pytest.approx(other["fvu"], rel=1e-5)
    for lang, loss in results["ours"].loss.items():
        assert results["gs"].loss[lang].replacement == pytest.approx(loss.replacement, rel=1e-5)


def test_another_models_transcoders_are_refused_with_the_fix(tmp_path, gemma3):
    raw = _raw(0, (F, D + 8))
    wide = {k: torch.randn(D + 8, v.shape[-1]) if k in ("w_enc",) else v for k, v in raw.items()}
    wide["b_dec"], wide["affine_skip_connection"] = torch.zeros(D + 8), torch.zeros(D + 8, D + 8)
    (tmp_path / "wide" / f"layer_0_{VARIANT}").mkdir(parents=True)
    save_file(wide, tmp_path / "wide" / f"layer_0_{VARIANT}" / "params.safetensors")
    fix = r"google/gemma-scope-2-270m-pt for Gemma 3 270M.*download the one for this model, or pass --model"
    with pytest.raises(
        CheckpointError,
        match=rf"a model of width 40 with at least 1 layers; this model has 3 layers of width 32\. .*{fix}",
    ):
        load_transcoder(tmp_path / "wide", model=gemma3)
    _transcoder_all(tmp_path / "deep", layers=(0, 5))
    with pytest.raises(
        CheckpointError, match=rf"width 32 with at least 6 layers; this model has 3 layers of width 32\. .*{fix}"
    ):
        load_transcoder(tmp_path / "deep", model=gemma3)
    (tmp_path / "clt").mkdir()
    for l in range(2):  # a 2-layer model's CLT
        save_file(_raw(l, (F, 2, D)), tmp_path / "clt" / f"params_layer_{l}.safetensors")
    with pytest.raises(
        CheckpointError, match=rf"width 32 with 2 layers; this model has 3 layers of width 32\. .*{fix}"
    ):
        load_transcoder(tmp_path / "clt", model=gemma3)


def test_what_cannot_be_read_is_refused(tmp_path, gemma3):
    _transcoder_all(tmp_path / "ta")
    with pytest.raises(CheckpointError, match="read the pre-feedforward norm's output.*Load them with the model"):
        load_transcoder(tmp_path / "ta")
    with pytest.raises(CheckpointError, match=f"one layer's Gemma Scope 2 transcoder; give the folder .*{VARIANT}"):
        load_transcoder(tmp_path / "ta" / f"layer_1_{VARIANT}", model=gemma3)
    (tmp_path / "ta" / f"layer_1_{VARIANT}" / "config.json").write_text(
        json.dumps({"architecture": "jump_relu", "hf_hook_point_in": "model.layers.1.output"})
    )
    with pytest.raises(CheckpointError, match="hf_hook_point_in 'model.layers.1.output': not a JumpReLU transcoder"):
        load_transcoder(tmp_path / "ta", model=gemma3)
    (tmp_path / "sae" / "layer_0_width_16k_l0_small").mkdir(parents=True)
    save_file(
        {"w_enc": torch.zeros(D, F), "b_enc": torch.zeros(F)},
        tmp_path / "sae" / "layer_0_width_16k_l0_small" / "params.safetensors",
    )
    with pytest.raises(CheckpointError, match="lacks threshold, w_dec, b_dec"):
        load_transcoder(tmp_path / "sae", model=gemma3)
    _transcoder_all(tmp_path / "resid_post_all", "width_16k_l0_small", affine=False)  # an SAE's names and layout
    with pytest.raises(CheckpointError, match="SAEs of resid_post .*not transcoders; download the release's"):
        load_transcoder(tmp_path / "resid_post_all", model=gemma3)
    _clt_variant(tmp_path / "partial")
    (tmp_path / "partial" / "params_layer_1.safetensors").unlink()
    with pytest.raises(CheckpointError, match="every one of its 3 layers; missing params_layer_1.safetensors"):
        load_transcoder(tmp_path / "partial", model=gemma3)
    with pytest.raises(CheckpointError, match="pass the model"):
        save_transcoder(_known(per_layer=True), tmp_path / "out", "gemma-scope-2")
