"""Transcoder checkpoints of other tools: featflow's (the CLT paper's) and circuit-tracer's files,
made by hand from their formats and held to literal loops over their blocks (the triu order, the
summed biases, circuit-tracer's un-ReLU'd JumpReLU), and written from a known transcoder of every
kind and read back to the same activations and reconstructions; what cannot map exactly is refused
with the fix; a checkpoint of another model is refused by ``check_fits``; and ``--clt-train-load``
reads each format through the slice to the same numbers. (Skip transcoders: ``test_skip_formats.py``;
Gemma Scope 2: ``test_gemma_scope.py``.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from workbench.analyses import clt_train
from workbench.clt.formats import CheckpointError, detect, load_transcoder
from workbench.clt.formats.circuit_tracer import RELU_LOG_THRESHOLD, load_circuit_tracer, save_circuit_tracer
from workbench.clt.formats.featflow import featflow_blocks, save_featflow
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder, check_fits
from workbench.errors import WorkbenchError
from workbench.runs.job import run
from workbench.runs.options import RunOptions

L, D, F = 3, 16, 8
KINDS = {
    "cross-layer": {},
    "per-layer": {"per_layer": True},
    "windowed": {"window": 1},
    "subset": {"layers": (0, 2)},
    "per-layer subset": {"per_layer": True, "layers": (1, 2)},
}
TIGHT = dict(rtol=1e-6, atol=1e-6)


def _clt(n_layers: int = L, d: int = D, model: str = "tiny", seed: int = 1, **kind) -> CrossLayerTranscoder:
    """Random weights, biases (also at layers without features), thresholds in [0.01, 0.3] and
    scales other than 1 (input scales powers of two, so folding them into W_enc is exact)."""
    clt = CrossLayerTranscoder(CLTConfig(n_layers, d, F, model=model, **kind), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        clt.b_enc.copy_(torch.randn(n_layers, F, generator=g) * 0.3)
        clt.b_dec.copy_(torch.randn(n_layers, d, generator=g) * 0.1)
        clt.log_threshold.copy_((torch.rand(n_layers, F, generator=g) * 0.29 + 0.01).log())
        clt.in_scale.copy_(2.0 ** torch.randint(-2, 3, (n_layers,), generator=g).float())
        clt.out_scale.copy_(torch.rand(n_layers, generator=g) * 2 + 0.25)
        clt.clear_uncovered()
    return clt.eval()


def _x(n: int = 64, n_layers: int = L, d: int = D) -> torch.Tensor:
    return torch.randn(n, n_layers, d, generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def _assert_same(a: CrossLayerTranscoder, b: CrossLayerTranscoder) -> None:
    """Same activations and reconstructions on random inputs (and enough features active that it matters)."""
    x = _x(n_layers=a.config.n_layers, d=a.config.d_model)
    recon_a, acts_a = a(x)
    recon_b, acts_b = b(x)
    assert (acts_a > 0).float().mean() > 0.1
    torch.testing.assert_close(acts_b, acts_a, **TIGHT)
    torch.testing.assert_close(recon_b, recon_a, **TIGHT)
    for layer in range(a.config.n_layers):  # the replacement model's per-layer path too
        torch.testing.assert_close(b.encode_layer(x[:, layer], layer), a.encode_layer(x[:, layer], layer), **TIGHT)


# --------------------------------------------------------------------------- featflow


def _featflow_folder(
    folder, cross: bool = True, model_name: str = "CausalNLP/gpt2-hf_multilingual-20", n_layers: int = L, d: int = D
):
    """A featflow checkpoint made by hand from its format (random tensors, scaling factors not 1)."""
    g = torch.Generator().manual_seed(7)
    blocks = n_layers * (n_layers + 1) // 2 if cross else n_layers
    t = {
        "W_enc": torch.randn(n_layers, d, F, generator=g) / math.sqrt(d),
        "b_enc": torch.randn(n_layers, F, generator=g) * 0.3,
        "log_threshold": (torch.rand(n_layers, F, generator=g) * 0.3 + 0.01).log(),
        "W_dec": torch.randn(blocks, F, d, generator=g) * 0.2,
        "b_dec": torch.randn(blocks, d, generator=g) * 0.1,
        "estimated_norm_scaling_factor_in": torch.rand(n_layers, generator=g) + 0.5,
        "estimated_norm_scaling_factor_out": torch.rand(n_layers, generator=g) + 0.5,
        "feature_count": torch.zeros(n_layers, F, dtype=torch.long),
    }
    folder.mkdir(parents=True)
    save_file(t, folder / "clt_weights.safetensors")
    cfg = {
        "model_name": model_name,
        "d_in": d,
        "d_latent": F,
        "cross_layer_decoders": cross,
        "dtype": "float32",
        "jumprelu_init_threshold": 0.03,
        "jumprelu_bandwidth": 1.0,
    }
    (folder / "clt_cfg.json").write_text(json.dumps(cfg))
    return t


@torch.no_grad()
def _featflow_literal(t, x: torch.Tensor, cross: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """featflow's forward as a loop: block i of W_dec goes from triu row[i] to column[i]."""
    n_layers = t["W_enc"].shape[0]
    acts = torch.zeros(x.shape[0], n_layers, F)
    for l in range(n_layers):
        pre = (x[:, l] * t["estimated_norm_scaling_factor_in"][l]) @ t["W_enc"][l] + t["b_enc"][l]
        acts[:, l] = pre * (pre > t["log_threshold"][l].exp())
    out = torch.zeros(x.shape[0], n_layers, x.shape[-1])
    rows, cols = torch.triu_indices(n_layers, n_layers) if cross else (torch.arange(n_layers),) * 2
    for i in range(len(rows)):
        source, target = int(rows[i]), int(cols[i])
        out[:, target] += acts[:, source] @ t["W_dec"][i] + t["b_dec"][i]
    return out / t["estimated_norm_scaling_factor_out"][None, :, None], acts


def test_featflow_blocks_are_the_triu_order():
    blocks = featflow_blocks(4)
    assert blocks[:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1)] and blocks[-1] == (3, 3) and len(blocks) == 10
    assert featflow_blocks(3, cross=False) == [(0, 0), (1, 1), (2, 2)]


def _assert_literal(clt, literal) -> None:
    """``clt``'s features and reconstruction on random inputs are the format's literal forward's
    (``literal(x) -> (reconstruction, activations)``), with a good share of features firing."""
    x = _x()
    want_recon, want_acts = literal(x)
    recon, acts = clt(x)
    assert (acts > 0).float().mean() > 0.1
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(recon, want_recon, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cross", [True, False], ids=["cross-layer", "per-layer"])
def test_a_featflow_checkpoint_reads_as_its_literal_forward(tmp_path, cross):
    t = _featflow_folder(tmp_path / "ff", cross)
    assert detect([tmp_path / "ff"]) == "featflow"
    clt = load_transcoder(tmp_path / "ff", model_name="ignored")
    assert clt.config.per_layer is not cross and clt.config.model == "CausalNLP/gpt2-hf_multilingual-20"
    _assert_literal(clt, lambda x: _featflow_literal(t, x, cross))


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
def test_featflow_round_trip_of_every_kind(tmp_path, kind):
    clt = _clt(**KINDS[kind])
    save_featflow(clt, tmp_path / "ff")
    back = load_transcoder(tmp_path / "ff")
    _assert_same(clt, back)
    assert back.config.model == "tiny" and back.config.per_layer == (clt.config.targets(0) == 1)


def test_the_featflow_writer_keeps_featflows_own_keys(tmp_path):
    from safetensors.torch import load_file

    save_featflow(_clt(), tmp_path / "ff", model_name="gpt2")
    t = load_file(tmp_path / "ff" / "clt_weights.safetensors")
    assert t["W_dec"].shape == (6, F, D) and t["b_dec"].shape == (6, D) and t["W_enc"].shape == (L, D, F)
    assert t["layer_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]
    assert t["feature_count"].shape == (L, F)
    cfg = json.loads((tmp_path / "ff" / "clt_cfg.json").read_text())
    assert cfg["model_name"] == "gpt2" and cfg["cross_layer_decoders"] and (cfg["d_in"], cfg["d_latent"]) == (D, F)


def test_an_inconsistent_featflow_checkpoint_is_refused(tmp_path):
    _featflow_folder(tmp_path / "ff", cross=True)
    cfg = json.loads((tmp_path / "ff" / "clt_cfg.json").read_text())
    (tmp_path / "ff" / "clt_cfg.json").write_text(json.dumps({**cfg, "cross_layer_decoders": False}))
    with pytest.raises(CheckpointError, match=r"per-layer CLT .*W_dec \(6, 8, 16\) \(expected \(3, 8, 16\)\)"):
        load_transcoder(tmp_path / "ff")


# --------------------------------------------------------------------------- circuit-tracer


def _yaml(folder, kind: str, hook_in: str = "ln2.hook_normalized", hook_out: str = "hook_mlp_out", **extra) -> None:
    lines = [f"model_kind: {kind}", f"feature_input_hook: {hook_in}", f"feature_output_hook: {hook_out}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")


def _ct_set(folder, threshold=True, hook_in="ln2.hook_normalized", **extra_tensors) -> list[dict]:
    """circuit-tracer per-layer files by hand: W_enc [F, d] (F.linear), JumpReLU thresholds."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    layers = []
    for i in range(L):
        t = {
            "W_enc": torch.randn(F, D, generator=g) / 4,
            "b_enc": torch.randn(F, generator=g) * 0.3,
            "W_dec": torch.randn(F, D, generator=g) * 0.2,
            "b_dec": torch.randn(D, generator=g) * 0.1,
        }
        if threshold is not None:
            t["activation_function.threshold"] = torch.rand(F, generator=g) * 0.3 if threshold is True else threshold
        save_file({**t, **extra_tensors}, folder / f"layer_{i}.safetensors")
        layers.append(t)
    _yaml(folder, "transcoder_set", hook_in, model_name="google/gemma-2-2b")
    return layers


def _ct_clt(folder, threshold: bool = True) -> list[dict]:
    """circuit-tracer CLT files by hand: W_enc_i [F, d], W_dec_i [F, L - i, d], b_dec_i the target's bias."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(12)
    layers = []
    for i in range(L):
        enc = {
            f"W_enc_{i}": torch.randn(F, D, generator=g) / 4,
            f"b_enc_{i}": torch.randn(F, generator=g) * 0.3,
            f"b_dec_{i}": torch.randn(D, generator=g) * 0.1,
        }
        if threshold:
            enc[f"threshold_{i}"] = torch.rand(F, generator=g) * 0.3
        dec = {f"W_dec_{i}": torch.randn(F, L - i, D, generator=g) * 0.2}
        save_file(enc, folder / f"W_enc_{i}.safetensors")
        save_file(dec, folder / f"W_dec_{i}.safetensors")
        layers.append({k.rsplit("_", 1)[0]: v for k, v in {**enc, **dec}.items()})
    _yaml(folder, "cross_layer_transcoder")
    return layers


def _ct_act(pre: torch.Tensor, threshold: torch.Tensor | None) -> torch.Tensor:
    """circuit-tracer's activation: ``x * (x > threshold)`` (no ReLU first), or ReLU without a threshold."""
    return torch.relu(pre) if threshold is None else pre * (pre > threshold)


@torch.no_grad()
def _ct_set_literal(layers, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    acts = torch.stack(
        [
            _ct_act(torch.nn.functional.linear(x[:, i], t["W_enc"], t["b_enc"]), t.get("activation_function.threshold"))
            for i, t in enumerate(layers)
        ],
        dim=1,
    )
    recon = torch.stack([acts[:, i] @ t["W_dec"] + t["b_dec"] for i, t in enumerate(layers)], dim=1)
    return recon, acts


@torch.no_grad()
def _ct_clt_literal(layers, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    acts = torch.stack(
        [_ct_act(x[:, i] @ t["W_enc"].T + t["b_enc"], t.get("threshold")) for i, t in enumerate(layers)], dim=1
    )
    recon = torch.stack([t["b_dec"].expand(x.shape[0], D).clone() for t in layers], dim=1)
    for source, t in enumerate(layers):
        for k in range(L - source):
            recon[:, source + k] += acts[:, source] @ t["W_dec"][:, k]
    return recon, acts


@pytest.mark.parametrize("kind", ["transcoder_set", "cross_layer_transcoder"])
def test_circuit_tracer_files_read_as_their_literal_forward(tmp_path, kind):
    folder = tmp_path / "ct"
    layers = _ct_set(folder) if kind == "transcoder_set" else _ct_clt(folder)
    literal = _ct_set_literal if kind == "transcoder_set" else _ct_clt_literal
    assert detect([folder]) == "circuit-tracer"
    clt = load_transcoder(folder, model_name="tiny")
    assert clt.config.per_layer == (kind == "transcoder_set")
    assert clt.config.model == ("google/gemma-2-2b" if kind == "transcoder_set" else "tiny")  # the file's name wins
    _assert_literal(clt, lambda x: literal(layers, x))


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
def test_circuit_tracer_round_trip_of_every_kind(tmp_path, kind):
    clt = _clt(**KINDS[kind])
    save_circuit_tracer(clt, tmp_path / "ct")
    written = {p.name for p in (tmp_path / "ct").iterdir()}
    assert ("layer_0.safetensors" in written) == (clt.config.targets(0) == 1)
    _assert_same(clt, load_transcoder(tmp_path / "ct"))


@pytest.mark.parametrize("threshold", [None, "zero"], ids=["relu", "threshold-0"])
def test_relu_and_zero_thresholds_are_exactly_a_relu(tmp_path, threshold):
    layers = _ct_set(tmp_path / "ct", threshold=None if threshold is None else torch.zeros(F))
    clt = load_transcoder(tmp_path / "ct")
    assert torch.all(clt.log_threshold == RELU_LOG_THRESHOLD) and torch.isfinite(clt.log_threshold).all()
    x = _x()
    for layer in layers:
        layer.pop("activation_function.threshold", None)  # the literal: a plain ReLU
    want_recon, want_acts = _ct_set_literal(layers, x)
    recon, acts = clt(x)
    assert torch.equal(acts > 0, want_acts > 0)  # the same gate, to the last feature
    torch.testing.assert_close(acts, want_acts, **TIGHT)
    torch.testing.assert_close(recon, want_recon, rtol=1e-5, atol=1e-5)


def test_an_activation_relu_config_overrides_the_files_thresholds(tmp_path):
    _ct_set(tmp_path / "ct")
    (tmp_path / "ct" / "config.yaml").write_text((tmp_path / "ct" / "config.yaml").read_text() + "activation: relu\n")
    assert torch.all(load_transcoder(tmp_path / "ct").log_threshold == RELU_LOG_THRESHOLD)


@torch.no_grad()
def test_mlp_hook_in_is_read_with_the_norm_folded_in(tmp_path):
    """A transcoder reading the norm's output ``n * w + b`` equals ours reading ``n`` once the norm's
    weight and bias are folded into the encoder; without the norms it is refused."""
    layers = _ct_set(tmp_path / "ct", hook_in="mlp.hook_in")
    g = torch.Generator().manual_seed(5)
    norms = [(torch.rand(D, generator=g) + 0.5, torch.randn(D, generator=g) * 0.2) for _ in range(L)]
    with pytest.raises(CheckpointError, match="mlp.hook_in .* norm folded in"):
        load_transcoder(tmp_path / "ct")
    clt = load_circuit_tracer(tmp_path / "ct", norms=norms)
    n = _x()
    norm_out = torch.stack([n[:, l] * w + b for l, (w, b) in enumerate(norms)], dim=1)
    want_recon, want_acts = _ct_set_literal(layers, norm_out)
    recon, acts = clt(n)
    assert (acts > 0).float().mean() > 0.1
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recon, want_recon, rtol=1e-5, atol=1e-5)
    unfolded = load_circuit_tracer(tmp_path / "ct", norms=[(torch.ones(D), None)] * L)
    assert not torch.allclose(unfolded(n)[1], want_acts, atol=1e-3)  # the fold matters


def _rewrite_yaml(folder, **changes) -> None:
    text = (folder / "config.yaml").read_text()
    for key, value in changes.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines())
    (folder / "config.yaml").write_text(text + "\n")


def test_what_a_workbench_transcoder_cannot_reproduce_is_refused(tmp_path):
    (tmp_path / "gs").mkdir()
    save_file({"w_enc": torch.zeros(D, F), "w_dec": torch.zeros(F, D)}, tmp_path / "gs" / "layer_0.safetensors")
    _yaml(tmp_path / "gs", "transcoder_set")
    with pytest.raises(CheckpointError, match="lacks W_enc.*it is Gemma Scope 2's: give its transcoder_all or clt"):
        load_transcoder(tmp_path / "gs")
    _ct_set(tmp_path / "negative", threshold=torch.linspace(-0.1, 0.2, F))
    with pytest.raises(CheckpointError, match="negative JumpReLU thresholds.*no ReLU"):
        load_transcoder(tmp_path / "negative")
    _ct_set(tmp_path / "topk", threshold=None, k=torch.tensor(4))
    with pytest.raises(CheckpointError, match="TopK"):
        load_transcoder(tmp_path / "topk")
    _ct_clt(tmp_path / "resid")
    _rewrite_yaml(tmp_path / "resid", feature_input_hook="hook_resid_mid")
    with pytest.raises(CheckpointError, match="hook_resid_mid is the residual before the MLP's norm"):
        load_transcoder(tmp_path / "resid")
    _rewrite_yaml(tmp_path / "resid", feature_input_hook="ln2.hook_normalized", feature_output_hook="mlp.hook_out")
    with pytest.raises(CheckpointError, match="post-MLP norm. This model has one"):
        load_circuit_tracer(tmp_path / "resid", post_mlp_norm=True)
    assert load_circuit_tracer(tmp_path / "resid", post_mlp_norm=False).config.n_layers == L
    (tmp_path / "resid" / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.yaml, so which point they read is unknown"):
        load_transcoder(tmp_path / "resid")


def test_an_unrecognised_folder_is_refused_with_what_it_holds(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "weights.pt").write_text("x")
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"odd holds notes.txt, weights.pt: no transcoder format .*clt_cfg.json"):
        load_transcoder(tmp_path / "odd")
    with pytest.raises(CheckpointError, match="No folder"):
        load_transcoder(tmp_path / "nowhere")
    save_featflow(_clt(), tmp_path / "ff")
    with pytest.raises(CheckpointError, match="Several folders are read only as SAELens"):
        load_transcoder([tmp_path / "ff", tmp_path / "odd"])


# --------------------------------------------------------------------------- another model


def test_a_checkpoint_of_another_model_is_refused_with_the_fix(tmp_path, tiny):
    n_layers, d = tiny.cfg.n_layers, tiny.cfg.d_model
    _featflow_folder(tmp_path / "named", model_name="CausalNLP/gpt2-hf_multilingual-20", n_layers=n_layers, d=d)
    clt = load_transcoder(tmp_path / "named", model_name="tiny")
    with pytest.raises(
        WorkbenchError,
        match="made for CausalNLP/gpt2-hf_multilingual-20, not tiny; pass --model CausalNLP/gpt2-hf_multilingual-20",
    ):
        check_fits(clt, tiny, "tiny")
    save_circuit_tracer(_clt(n_layers, d, model="google/gemma-2-2b"), tmp_path / "ct")
    with pytest.raises(WorkbenchError, match="--model google/gemma-2-2b"):
        check_fits(load_transcoder(tmp_path / "ct"), tiny, "tiny")
    _featflow_folder(tmp_path / "shape", model_name="tiny")  # 3 layers of 16, for a model of 2 of 64
    with pytest.raises(WorkbenchError, match=f"3 layers of width 16; tiny has {n_layers} of {d}.*--model"):
        check_fits(load_transcoder(tmp_path / "shape"), tiny, "tiny")
    check_fits(load_transcoder(tmp_path / "ct", model_name="tiny"), tiny, "google/gemma-2-2b")  # the right one fits


# --------------------------------------------------------------------------- through the slice


def test_clt_train_load_reads_every_format_to_the_same_numbers(tmp_path, tiny):
    clt = _clt(tiny.cfg.n_layers, tiny.cfg.d_model)
    clt.save(tmp_path / "ours")
    save_featflow(clt, tmp_path / "featflow")
    save_circuit_tracer(clt, tmp_path / "circuit-tracer")
    results = {}
    for name in ("ours", "featflow", "circuit-tracer"):
        only = {"clt-train": clt_train.Options(load=str(tmp_path / name), heldout=3)}
        run(RunOptions(model="tiny", languages=("en", "de")), only, tmp_path / f"run-{name}", show_progress=False)
        results[name] = clt_train.Result.load(tmp_path / f"run-{name}")
    assert results["featflow"].source == str(tmp_path / "featflow") and results["featflow"].training is None
    ours = results["ours"].table()
    assert any(row["l0"] > 0 for row in ours)
    for name in ("featflow", "circuit-tracer"):
        for mine, theirs in zip(ours, results[name].table()):
            assert mine["l0"] == pytest.approx(theirs["l0"], abs=1e-6)
            assert mine["fvu"] == pytest.approx(theirs["fvu"], rel=1e-4)
        for lang, loss in results["ours"].loss.items():
            assert results[name].loss[lang].replacement == pytest.approx(loss.replacement, rel=1e-5)
