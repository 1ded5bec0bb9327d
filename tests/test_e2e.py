"""End-to-end tests on the real default model (Gemma 3 270M, Q4_K_M build) and the Bible corpus."""

import math

import pytest
import torch

from workbench import job as job_module
from workbench.job import RunConfig, run
from workbench.models import gemma_cache_dir, read_cache_manifest
from workbench.results import load_json

pytestmark = pytest.mark.e2e

# Measured on this build: max |log p_TL - log p_HF| = 6.9e-5 over these texts.
LOGPROB_TOLERANCE = 5e-4


def test_gemma_matches_hf_logits(gemma, bible):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(gemma_cache_dir()), dtype=torch.float32).eval()
    verses = bible.parallel(["en", "de", "zh", "ar", "hi"], ["1.1.1"])
    for lang, docs in verses.items():
        tokens = gemma.to_tokens(docs["text"][0])
        with torch.no_grad():
            ours = gemma(tokens).log_softmax(-1)
            theirs = hf(tokens).logits.log_softmax(-1)
        assert (ours - theirs).abs().max().item() < LOGPROB_TOLERANCE, lang
    del hf


def test_gemma_cache_records_the_build(gemma):
    info = read_cache_manifest(gemma_cache_dir())
    assert "Q4_K_M" in info["build"]
    assert gemma.workbench_source.route == "embedded-gguf"
    assert gemma.cfg.n_layers == 18 and gemma.cfg.d_mlp == 2048 and gemma.cfg.d_vocab == 262144


def test_gemma_tokenizes_every_script_without_unknowns(gemma, bible):
    unk = gemma.tokenizer.unk_token_id
    verses = bible.parallel(["zh", "ja", "ko", "ar", "hi", "ru", "sw"], ["43.3.16"])
    for lang, docs in verses.items():
        assert unk not in gemma.to_tokens(docs["text"][0])[0].tolist(), lang


def test_run_on_gemma_gives_plausible_losses(tmp_path, gemma, monkeypatch):
    monkeypatch.setattr(job_module, "load_model", lambda *a, **k: gemma)
    langs = ["en", "de", "zh", "sw"]
    report = run(RunConfig(languages=langs, heldout_documents=4, out=tmp_path), show_progress=False)
    manifest = load_json(tmp_path / "manifest.json")
    assert "Q4_K_M" in manifest["model"]["weights"]
    assert manifest["corpus"]["translations"]["sw"]["name"] == "Swahili Union Version 1997"
    table = {r["language"]: r for r in load_json(tmp_path / "loss.json")["table"]}
    uniform = math.log(gemma.cfg.d_vocab)
    for lang in langs:
        # A trained model is far better than uniform guessing over 262k tokens (12.5 nats).
        assert 0.3 < table[lang]["loss"] < uniform / 2, (lang, table[lang])
    assert report.exists() and "gemma-3-270m" in report.read_text()
