"""``--dtype bfloat16``: the model runs in half precision, every sum stays in float32 or wider.

The same job (loss, lens, PLND, FFN statistics, neuron fine-tuning, a transcoder) runs on the tiny
gated model twice, in float32 and in bfloat16 (the float32 weights rounded, as a checkpoint loaded
in half precision is). Measured on this job: mean losses differ by 0.0015 nats, PLND sets overlap
with Jaccard 0.93-1.0 per language and structure, FFN sparsities by 4e-4. The thresholds below
leave room for other BLAS builds, and would fail if a sum were taken in bfloat16 (its 8-bit
mantissa loses a loss sum of a few hundred tokens to ~1 nat) or if a half-precision model were
silently upcast (the parameters are checked after the run).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from workbench.analyses import clt_train, ffn, finetune, lens, loss, plnd
from workbench.runs import job
from workbench.runs.options import OptionError, RunOptions

ANALYSES = {
    "loss": loss.Options(documents=4),
    "lens": lens.Options(documents=2, per_document=2, accuracy_documents=4),
    "plnd": plnd.Options(documents=6, value=0.1, specificity=0.5),
    "ffn": ffn.Options(documents=4),
    "finetune": finetune.Options(sizes=(8,), random_size=0, documents=2, epochs=1),
    "clt-train": clt_train.Options(features=16, documents=6, tokens=600, batch=128, heldout=2, block_documents=18),
}
LOSS_TOLERANCE = 0.02  # nats, mean next-token loss (measured 0.0015)
PLND_JACCARD = 0.8  # per language and structure (measured >= 0.93)
FFN_TOLERANCE = 0.01  # sparsity and frequency, absolute (measured 4e-4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs' folders and the bfloat16 run's model as it was after its last analysis."""
    root = tmp_path_factory.mktemp("dtype")
    loaded = []
    original = job.load_run_model

    def spy(*args, **kwargs):
        loaded.append(original(*args, **kwargs))
        return loaded[-1]

    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(job, "load_run_model", spy)
        for dtype in ("float32", "bfloat16"):
            folders[dtype] = root / dtype
            job.run(
                RunOptions(model="tiny-gated", languages=("en", "de"), dtype=dtype),
                dict(ANALYSES),
                folders[dtype],
                show_progress=False,
            )
    return folders, loaded[-1]


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_the_dtype_is_recorded_and_the_model_stays_in_it(runs):
    folders, model = runs
    manifest = _json(folders["bfloat16"], "manifest")
    assert manifest["run"]["dtype"] == "bfloat16"
    assert manifest["model"]["details"]["dtype"] == "bfloat16"
    assert model.cfg.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad is False and p.grad is not None for p in model.parameters())


def test_losses_agree_with_float32(runs):
    folders, _ = runs
    for language in ("en", "de"):
        means = []
        for dtype in ("float32", "bfloat16"):
            record = _json(folders[dtype], "loss")["languages"][language]
            means.append(sum(record["loss_sum"]) / sum(record["n_predicted"]))
        assert abs(means[0] - means[1]) < LOSS_TOLERANCE, (language, means)


def test_plnd_sets_overlap_float32_ones(runs):
    folders, _ = runs
    full = {dtype: _json(folders[dtype], "plnd")["sets"] for dtype in folders}
    for language, sets in full["float32"].items():
        for structure, neurons in sets.items():
            ours = {tuple(n) for n in full["bfloat16"][language][structure]}
            theirs = {tuple(n) for n in neurons}
            assert theirs, (language, structure)
            jaccard = len(ours & theirs) / len(ours | theirs)
            assert jaccard >= PLND_JACCARD, (language, structure, jaccard)


def test_ffn_statistics_agree_with_float32(runs):
    folders, _ = runs
    metrics = {dtype: _json(folders[dtype], "ffn")["metrics"]["detector"] for dtype in folders}
    for measure in ("sparsity", "frequency"):
        for language in ("en", "de"):
            a, b = (np.array(metrics[dtype][measure][language]) for dtype in ("float32", "bfloat16"))
            np.testing.assert_allclose(a, b, atol=FFN_TOLERANCE)


def test_sums_and_trained_values_are_kept_in_float32_or_wider(runs):
    folders, _ = runs
    half = folders["bfloat16"]
    for part in [*half.glob("parts/plnd-*/*.safetensors"), *half.glob("parts/ffn-*/*.safetensors")]:
        for name, tensor in load_file(part).items():
            assert not tensor.is_floating_point() or tensor.dtype in (torch.float32, torch.float64), (part, name)
    (delta,) = half.glob("parts/finetune-*/deltas/*.safetensors")
    values = {k: v for k, v in load_file(delta).items() if v.is_floating_point()}
    assert values and all(v.dtype == torch.float32 for v in values.values())
    run = _json(half, "finetune")["runs"][0]
    assert run["record"]["first_loss"] != run["record"]["last_loss"]  # the half-precision model did train
    quality = {dtype: _json(folders[dtype], "clt-train")["loss"]["en"]["replacement"] for dtype in folders}
    assert abs(quality["float32"] - quality["bfloat16"]) < LOSS_TOLERANCE


def test_an_unknown_dtype_is_refused_with_the_choices():
    with pytest.raises(OptionError, match="float32, bfloat16, float16"):
        RunOptions(dtype="float8")


def test_float32_runs_keep_their_fingerprints_and_half_precision_gets_its_own():
    """A folder made before --dtype (float32) resumes as it was; a bfloat16 run never mixes with it."""
    assert "dtype" not in RunOptions().context() and "n_devices" not in RunOptions(n_devices=2).context()
    assert RunOptions(dtype="bfloat16").context()["dtype"] == "bfloat16"
