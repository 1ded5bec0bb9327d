import time
import warnings

import pytest
import torch
from conftest import BRIDGED, save_tiny_hf
from transformers import ViTConfig

from workbench.errors import OfflineError, UnknownModelError, UnsupportedArchitectureError
from workbench.models import convert, gemma, hub, hub_name
from workbench.models.gemma import verify_cache_folder
from workbench.models.loading import load_model, tiny_model
from workbench.models.model import source_of


def test_a_family_only_the_bridge_loads_matches_hf_logits(tmp_path):
    """GPT-BigCode, which HookedTransformer has no converter for, loads through TransformerBridge
    with the same hook names and the HF model's numbers (the 14 native families: test_families)."""
    hf = save_tiny_hf(BRIDGED, tmp_path / "model")
    model = load_model(str(tmp_path / "model"))
    assert source_of(model).route == "local-folder+bridge"
    tokens = model.to_tokens("Hello world, bonjour le monde")
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        theirs = hf(tokens).logits.log_softmax(-1)
    assert (ours - theirs).abs().max().item() < 1e-4
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    assert {f"blocks.{i}.mlp.hook_post" for i in range(2)} <= set(cache.keys())


def test_native_gemma3_config_is_transformer_lens_official_one():
    """The default model's folder, configured from its own config.json, gets the config
    TransformerLens builds for google/gemma-3-270m (float rounding of eps aside)."""
    from types import SimpleNamespace

    from transformer_lens import loading_from_pretrained as tl
    from transformers import AutoConfig

    from workbench.models.native import native_config

    hf = AutoConfig.from_pretrained(str(gemma.prepare_gemma()))
    ours = native_config(SimpleNamespace(config=hf), "gemma-3-270m", "cpu", torch.float32).to_dict()
    official = tl.get_pretrained_model_config(gemma.GEMMA_OFFICIAL_NAME, hf_cfg=hf.to_dict(), device="cpu").to_dict()
    assert ours.pop("eps") == pytest.approx(official.pop("eps"), rel=1e-6)
    assert ours.pop("tokenizer_name") == "gemma-3-270m"
    official.pop("tokenizer_name")
    assert ours == official


def test_tiny_models_are_seeded_and_hookable():
    a, b = tiny_model("tiny", seed=1), tiny_model("tiny", seed=1)
    c = tiny_model("tiny", seed=2)
    assert torch.equal(a.W_out, b.W_out) and not torch.equal(a.W_out, c.W_out)
    gated = tiny_model("tiny-gated")
    assert gated.cfg.gated_mlp and gated.cfg.n_key_value_heads == 2
    tokens = gated.to_tokens("ab")
    assert tokens[0, 0].item() == gated.tokenizer.bos_token_id
    logits, cache = gated.run_with_cache(tokens)
    assert logits.shape == (1, 3, 260) and "blocks.1.mlp.hook_post" in cache


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownModelError, match="gemma-3-270m"):
        load_model("not-a-model")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"0")
    with pytest.raises(UnknownModelError, match="not a model folder"):
        load_model(str(f))


def test_hub_name_while_offline_fails_fast_and_says_how(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="model folder"):
        load_model("someone/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 10  # no DNS hang


def test_unreachable_hub_detected_without_the_setting(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HUB_HOST", "hub.invalid")  # a name that can never resolve
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="cannot be reached"):
        load_model("someone/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 10


def test_non_causal_architecture_is_refused(tmp_path):
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path
    )
    with pytest.raises(UnsupportedArchitectureError, match="ViT"):
        load_model(str(tmp_path))


def test_missing_config_is_explained(tmp_path):
    with pytest.raises(UnknownModelError, match="config.json"):
        load_model(str(tmp_path))


def _fake_cache(folder):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    (folder / "config.json").write_text("{}")
    gemma._write_cache_manifest(folder, {"build": "fake", "gguf_sha256": "x"})


def test_cache_integrity_detects_partial_and_corrupt_folders(tmp_path):
    good = tmp_path / "good"
    _fake_cache(good)
    assert verify_cache_folder(good) is None
    assert verify_cache_folder(tmp_path / "absent") == "missing"
    partial = tmp_path / "partial"
    _fake_cache(partial)
    (partial / gemma.CACHE_MANIFEST).unlink()
    assert "partial" in verify_cache_folder(partial)
    corrupt = tmp_path / "corrupt"
    _fake_cache(corrupt)
    data = bytearray((corrupt / "model.safetensors").read_bytes())
    data[10] ^= 0xFF
    (corrupt / "model.safetensors").write_bytes(bytes(data))
    assert "corrupt" in verify_cache_folder(corrupt)
    (corrupt / "model.safetensors").write_bytes(b"short")
    assert "size" in verify_cache_folder(corrupt)


def test_corrupt_cache_is_rebuilt_not_used(tmp_path, monkeypatch):
    builds = []

    def fake_build(workdir):
        out = workdir / "hf"
        _fake_cache(out)
        builds.append(out)
        return out

    monkeypatch.setattr(gemma, "_build_gemma_folder", fake_build)
    target = gemma.prepare_gemma(tmp_path)
    assert len(builds) == 1 and verify_cache_folder(target) is None
    assert gemma.prepare_gemma(tmp_path) == target and len(builds) == 1  # intact: reused
    (target / "model.safetensors").write_bytes(b"garbage" * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gemma.prepare_gemma(tmp_path)
    assert len(builds) == 2 and verify_cache_folder(target) is None
    assert any("rebuilding" in str(w.message) for w in caught)
    assert not list(tmp_path.glob("models/.building-*"))  # no leftovers


def test_bridged_models_are_refused_graphs_before_anything_runs(tmp_path):
    """A graph (or diff) on a bridged model is refused once the model loads, before the
    transcoder it needs spends minutes training."""
    from workbench.analyses import clt_graph, clt_train
    from workbench.errors import WorkbenchError
    from workbench.runs.job import run
    from workbench.runs.options import RunOptions

    save_tiny_hf(BRIDGED, tmp_path / "model")
    analyses = {"clt-train": clt_train.Options(features=8, tokens=100), "clt-graph": clt_graph.Options()}
    with pytest.raises(WorkbenchError, match="need a HookedTransformer"):
        run(
            RunOptions(model=str(tmp_path / "model"), languages=("en",)),
            analyses,
            tmp_path / "run",
            show_progress=False,
        )
    assert not (tmp_path / "run" / "parts").exists()


def test_models_command_lists_the_families_and_saves_one(tmp_path, capsys):
    from workbench.cli import main
    from workbench.models.families import FAMILIES

    assert main(["models"]) == 0
    assert ", ".join(FAMILIES) in capsys.readouterr().out
    assert main(["models", "--tiny", "olmo", str(tmp_path / "olmo")]) == 0
    assert load_model(str(tmp_path / "olmo")).cfg.original_architecture == "OlmoForCausalLM"
    assert main(["models", "--tiny", "nosuch", str(tmp_path / "x")]) == 2
    assert "choose one of llama" in capsys.readouterr().err


@pytest.mark.parametrize("spec, family", [("facebook/xglm-564M", "xglm"), ("gpt2", "gpt2")])
def test_hub_names_of_native_families_convert_like_folders(tmp_path, monkeypatch, spec, family):
    """A hub name TransformerLens does not list (XGLM), and an official one whose config it
    cannot build under transformers 5 (GPT-2 reads n_ctx), are fetched as folders and converted
    natively (the download is replaced by a saved folder here)."""

    def unconfigurable(*args, **kwargs):
        raise AttributeError("'GPT2Config' object has no attribute 'n_ctx'")

    save_tiny_hf(family, tmp_path / "snapshot")
    monkeypatch.setattr(hub_name, "_in_hf_cache", lambda repo: True)
    monkeypatch.setattr(hub_name, "_hub_folder", lambda repo: tmp_path / "snapshot")
    monkeypatch.setattr(hub_name.HookedTransformer, "from_pretrained_no_processing", unconfigurable)
    model = load_model(spec)
    assert type(model).__name__ == "HookedTransformer" and source_of(model).route == "hub"
    assert source_of(model).name == spec


LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
GEMMA3_LINEAR = {
    "full_attention": {**LINEAR_ROPE, "rope_theta": 1e6},
    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
}


@pytest.mark.parametrize(
    "family, overrides, because",
    [
        ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}, "sliding window"),
        ("llama", {"rope_parameters": LINEAR_ROPE}, "'linear' rotary scaling"),
        ("gemma3", {"rope_parameters": GEMMA3_LINEAR}, "'linear' rotary scaling"),
    ],
)
def test_variants_a_conversion_would_miss_take_the_bridge(tmp_path, family, overrides, because):
    """A Qwen 2 sliding window (TransformerLens ignores it) or a linear rotary scaling (neither it
    nor the native configs read it) would give wrong numbers on long prompts: such a folder loads
    through the bridge, with the reason recorded, and the HF model's numbers."""
    from workbench.models.families import save_family

    hf = save_family(family, tmp_path / "model", **overrides)
    model = load_model(str(tmp_path / "model"))
    assert source_of(model).route == "local-folder+bridge"
    assert because in source_of(model).details["bridged_because"]
    tokens = model.to_tokens("In the beginning God created the heaven and the earth. Au commencement, Dieu")
    with torch.no_grad():
        assert (model(tokens).log_softmax(-1) - hf(tokens).logits.log_softmax(-1)).abs().max() < 1e-4


def test_llama3_rotary_scaling_converts(tmp_path):
    """Llama 3's rotary scaling is one TransformerLens reads: the folder converts, numbers equal."""
    from workbench.models.families import save_family

    rope = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    hf = save_family("llama", tmp_path / "model", rope_parameters=rope)
    model = load_model(str(tmp_path / "model"))
    assert source_of(model).route == "local-folder" and model.cfg.use_NTK_by_parts_rope
    tokens = model.to_tokens("In the beginning God created the heaven and the earth. " * 3)
    with torch.no_grad():
        assert (model(tokens).log_softmax(-1) - hf(tokens).logits.log_softmax(-1)).abs().max() < 1e-4


def test_a_conversion_that_disagrees_with_hf_on_the_probe_takes_the_bridge(tmp_path, monkeypatch):
    """Every conversion is checked against the HF model on a short probe; one that disagrees
    (here: a tolerance nothing can meet) is not used."""
    save_tiny_hf("llama", tmp_path / "model")
    assert convert.probe_error(load_model(str(tmp_path / "model")), *_hf_and_tokenizer(tmp_path / "model")) < 1e-4
    monkeypatch.setattr(convert, "PROBE_TOLERANCE", -1.0)
    model = load_model(str(tmp_path / "model"))
    assert source_of(model).route == "local-folder+bridge"
    assert "differ from the HF model's" in source_of(model).details["bridged_because"]


def _hf_and_tokenizer(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder))
