"""Transcoder features per language held to their definitions (counts over literal per-document
activations; shares, kinds and identity scores by hand), and the three CLT slices run as a job on
a tiny model: results, report, resume, loading a transcoder, refusing one of another model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analyses import clt_features, clt_steer, clt_train
from workbench.analyses.clt_train import analysis as train_analysis
from workbench.cli import main
from workbench.clt.activations import mlp_io
from workbench.clt.features.stats import FeatureStats, LanguageFeatures, feature_stats, top_contexts
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.data.batching import tokenize
from workbench.errors import WorkbenchError
from workbench.runs.job import run
from workbench.runs.options import RunOptions
from workbench.runs.report import collect_figures


def _clt(model, features: int = 24, seed: int = 0) -> CrossLayerTranscoder:
    clt = CrossLayerTranscoder(CLTConfig(model.cfg.n_layers, model.cfg.d_model, features), seed=seed)
    with torch.no_grad():
        clt.b_enc.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
    return clt


def _docs(model, texts):
    return tokenize(model, texts)


TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
]


def test_feature_stats_count_literal_activations(tiny):
    clt = _clt(tiny)
    docs = _docs(tiny, TEXTS)
    stats = feature_stats(tiny, clt, docs, batch_tokens=64)
    active = np.zeros((tiny.cfg.n_layers, 24))
    total = np.zeros((tiny.cfg.n_layers, 24))
    tokens = 0
    for doc in docs:  # one document at a time, every position but BOS
        x, _ = mlp_io(tiny, doc[None])
        acts = clt.encode(x[1:]).detach().double().numpy()
        active += (acts > 0).sum(0)
        total += acts.sum(0)
        tokens += len(doc) - 1
    assert stats.tokens == tokens
    np.testing.assert_array_equal(stats.active, active)
    np.testing.assert_allclose(stats.total, total, rtol=1e-5, atol=1e-6)
    assert 0 < stats.frequency.mean() < 1
    np.testing.assert_allclose(stats.active_mean * stats.active, stats.total, rtol=1e-6)


def test_kinds_shares_and_identity_scores_by_hand():
    freq = {  # one layer, four features, three languages
        "en": [0.90, 0.20, 0.00, 0.05],
        "de": [0.05, 0.30, 0.00, 0.00],
        "zh": [0.00, 0.25, 0.001, 0.00],
    }
    stats = {lang: FeatureStats(1000, np.array([f]) * 1000, np.array([f]) * 1000) for lang, f in freq.items()}
    feats = LanguageFeatures.of(stats, min_frequency=0.01, specific_share=0.8)
    np.testing.assert_allclose(feats.share[:, 0, 0], [0.9 / 0.95, 0.05 / 0.95, 0])
    assert feats.specific()[:, 0].tolist() == [[True, False, False, True], [False] * 4, [False] * 4]
    assert feats.multilingual()[0].tolist() == [False, True, False, False]
    assert feats.rare()[0].tolist() == [False, False, True, False]
    score = feats.identity_score()
    for i, lang in enumerate(freq):
        for f in range(4):
            others = max(freq[k][f] for k in freq if k != lang)
            assert score[i, 0, f] == pytest.approx(freq[lang][f] - others)
    assert feats.identity_features("en", 5) == [(0, 0), (0, 3)]  # specific ones only, best first
    assert feats.identity_features("de", 5) == []
    row = feats.layer_counts()[0]
    assert (row["specific en"], row["specific"], row["multilingual"], row["rare"], row["other"]) == (2, 2, 1, 1, 0)


def test_top_contexts_are_each_documents_highest_activation(tiny):
    clt = _clt(tiny)
    docs = _docs(tiny, TEXTS)
    features = [(0, 3), (1, 5)]
    found = top_contexts(tiny, clt, docs, features, k=2, window=4, batch_tokens=64)
    for (layer, f), contexts in zip(features, found):
        per_doc = sorted(
            (float(clt.encode(mlp_io(tiny, d[None])[0][1:])[:, layer, f].max().detach()) for d in docs), reverse=True
        )
        expected = [v for v in per_doc if v > 0][:2]
        assert [c.activation for c in contexts] == pytest.approx(expected, rel=1e-5)
        assert all("[" in c.text and c.text.endswith("]") for c in contexts)


SMALL = {
    "clt-train": clt_train.Options(features=32, documents=12, tokens=3000, batch=256, heldout=4, block_documents=36),
    "clt-features": clt_features.Options(documents=8, identity=3, cards=1, contexts=2),
    "clt-steer": clt_steer.Options(
        prompts=3, prompt_tokens=6, new_tokens=3, features=2, strengths=(0.0, 4.0), targets=("de",)
    ),
}


def _run(folder, analyses=SMALL, **kw):
    options = RunOptions(**{"model": "tiny", "languages": ("en", "de", "zh"), **kw})
    return run(options, analyses, folder, show_progress=False)


def test_clt_slices_run_save_report_and_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    report = _run(out)
    trained = clt_train.Result.load(out)
    assert trained.source == "trained" and trained.training.rows == 3072 and trained.training.seconds > 0
    assert set(trained.quality) == {"en", "de", "zh"} and len(trained.quality["en"]) == 2
    assert all(r.original > 0 and r.replacement > 0 for r in trained.loss.values())
    assert (out / trained.transcoder / "clt.safetensors").is_file()
    features = clt_features.Result.load(out)
    assert sum(features.tokens.values()) > 0 and len(features.layer_counts) == 2
    steer = clt_steer.Result.load(out)
    assert {(r.source, r.target) for r in steer.rows} == {("en", "de"), ("zh", "de")}
    zero = [r for r in steer.rows if r.strength == 0.0]
    for source in ("en", "zh"):  # strength 0 changes nothing: identity and control give the same numbers
        a, b = [r for r in zero if r.source == source]
        assert (a.share_target, a.mass_target) == pytest.approx((b.share_target, b.mass_target), nan_ok=True)
    html = report.read_text()
    assert "Cross-layer transcoder: reconstruction quality" in html and "Steering the output language" in html
    assert {"clt_quality", "clt_feature_kinds", "clt_steer_strength"} <= set(collect_figures(out))

    def must_not_train(*args, **kwargs):
        raise AssertionError("retrained a finished transcoder")

    monkeypatch.setattr(train_analysis, "train_clt", must_not_train)
    _run(out)
    assert clt_features.Result.load(out).layer_counts == features.layer_counts


def test_load_a_transcoder_and_refuse_one_of_another_model(tmp_path, tiny):
    folder = tmp_path / "mine"
    _clt(tiny, features=16).save(folder)
    only = {"clt-train": clt_train.Options(load=str(folder), heldout=3)}
    _run(tmp_path / "loaded", only)
    loaded = clt_train.Result.load(tmp_path / "loaded")
    assert loaded.source == str(folder) and loaded.training is None and loaded.config["n_features"] == 16
    CrossLayerTranscoder(CLTConfig(3, tiny.cfg.d_model, 8)).save(tmp_path / "other")
    with pytest.raises(WorkbenchError, match="3 layers"):
        _run(tmp_path / "refused", {"clt-train": clt_train.Options(load=str(tmp_path / "other"), heldout=3)})
    with pytest.raises(WorkbenchError, match="no folder"):
        _run(tmp_path / "missing", {"clt-train": clt_train.Options(load=str(tmp_path / "nowhere"), heldout=3)})


def test_splice_fine_tunes_a_loaded_transcoder_that_the_slices_read_and_resumes(tmp_path, tiny, monkeypatch):
    folder = tmp_path / "mine"
    base = _clt(tiny, features=16)
    base.save(folder)
    train = clt_train.Options(load=str(folder), heldout=3, documents=6, splice_steps=4, splice_lr=1e-3)
    _run(tmp_path / "run", {"clt-train": train, "clt-features": SMALL["clt-features"]})
    result = clt_train.Result.load(tmp_path / "run")
    assert result.splice is not None and result.splice.steps == 4 and len(result.splice.log) == 4
    assert result.transcoder.endswith("spliced") and "clt_splice" in train_analysis.figures(result)
    assert "fine-tuned through the spliced model" in train_analysis.verdict(result)
    tuned = CrossLayerTranscoder.load(tmp_path / "run" / result.transcoder)
    assert torch.equal(tuned.W_enc, base.W_enc) and not torch.equal(tuned.W_dec[0], base.W_dec[0])
    _run(tmp_path / "plain", {"clt-train": clt_train.Options(load=str(folder), heldout=3)})
    plain = clt_train.Result.load(tmp_path / "plain")
    assert result.loss["en"].replacement != plain.loss["en"].replacement

    def must_not_tune(*args, **kwargs):
        raise AssertionError("fine-tuned again")

    monkeypatch.setattr(train_analysis, "finetune_spliced", must_not_tune)
    _run(tmp_path / "run", {"clt-train": train})


def test_cli_groups_the_clt_actions(capsys):
    with pytest.raises(SystemExit):
        main(["clt", "--help"])
    assert "train" in capsys.readouterr().out
    assert (
        main(["clt", "steer", "--model", "tiny", "--languages", "en,de", "--targets", "fr", "--out", "/nonexistent"])
        == 2
    )
    assert "--clt-steer-targets fr are not among the run's --languages" in capsys.readouterr().err
