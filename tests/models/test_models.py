import time
import warnings

import pytest
import torch
from conftest import save_tiny_hf
from transformers import ViTConfig

from workbench.errors import OfflineError, UnknownModelError, UnsupportedArchitectureError
from workbench.models import hub
from workbench.models import loading as models
from workbench.models.loading import load_model, tiny_model, verify_cache_folder


@pytest.mark.parametrize(
    "kind, expected_route",
    [("gpt2", "local-folder+bridge"), ("llama", "local-folder"), ("xglm", "local-folder+bridge")],
)
def test_local_folder_matches_hf_logits(tmp_path, kind, expected_route):
    """GPT-2 (whose config TransformerLens 3.9 cannot read under transformers 5) and XGLM go
    through TransformerBridge; Llama converts to a HookedTransformer. All match HF."""
    folder = tmp_path / kind  # the word "llama" in the path must not confuse the loader
    hf = save_tiny_hf(kind, folder)
    model = load_model(str(folder))
    assert model.workbench_source.route == expected_route
    tokens = model.to_tokens("Hello world, bonjour le monde")
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        theirs = hf(tokens).logits.log_softmax(-1)
    assert (ours - theirs).abs().max().item() < 1e-4
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    assert {f"blocks.{i}.mlp.hook_post" for i in range(2)} <= set(cache.keys())


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
    models._write_cache_manifest(folder, {"build": "fake", "gguf_sha256": "x"})


def test_cache_integrity_detects_partial_and_corrupt_folders(tmp_path):
    good = tmp_path / "good"
    _fake_cache(good)
    assert verify_cache_folder(good) is None
    assert verify_cache_folder(tmp_path / "absent") == "missing"
    partial = tmp_path / "partial"
    _fake_cache(partial)
    (partial / models.CACHE_MANIFEST).unlink()
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

    monkeypatch.setattr(models, "_build_gemma_folder", fake_build)
    target = models.prepare_gemma(tmp_path)
    assert len(builds) == 1 and verify_cache_folder(target) is None
    assert models.prepare_gemma(tmp_path) == target and len(builds) == 1  # intact: reused
    (target / "model.safetensors").write_bytes(b"garbage" * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models.prepare_gemma(tmp_path)
    assert len(builds) == 2 and verify_cache_folder(target) is None
    assert any("rebuilding" in str(w.message) for w in caught)
    assert not list(tmp_path.glob("models/.building-*"))  # no leftovers
