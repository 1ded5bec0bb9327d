import numpy as np
import pytest
import torch

from workbench.analyses import plnd as plnd_slice
from workbench.analyses.plnd import analysis as plnd_analysis
from workbench.data.batching import Batch, tokenize
from workbench.neurons import plnd as plnd_module
from workbench.neurons.importance import batch_importance
from workbench.neurons.lape import LapeOptions, lape_entropy, lape_masks
from workbench.neurons.plnd import language_importance
from workbench.neurons.plnd_sets import PLNDResult, language_sets, specific_masks
from workbench.neurons.plnd_summary import ImportanceSummary
from workbench.neurons.selection import Selection
from workbench.neurons.sets import STRUCTURES, NeuronSet, structure_size, total_neurons
from workbench.runs.job import run
from workbench.runs.options import RunOptions
from workbench.runs.results import load_json

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good.",
    "And God called the light Day, and the darkness he called Night.",
]
IDS = [f"v{i}" for i in range(len(TEXTS))]


def test_neuron_sets_combine_and_round_trip():
    a = NeuronSet({"ffn": [[0, 1], [2, 5]], "attn_q": [[1, 3]]})
    b = NeuronSet({"ffn": [[2, 5], [3, 0]]})
    assert len(a & b) == 1 and len(a | b) == 4 and len(a - b) == 2
    assert a.jaccard(b) == pytest.approx(1 / 4)
    assert NeuronSet.from_dict(a.to_dict()).to_dict() == a.to_dict()
    assert a.per_layer(4)["ffn"] == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="attn_z"):
        NeuronSet({"attn_z": [[0, 0]]})


def test_neuron_set_masks_round_trip(tiny_gated):
    cfg = tiny_gated.cfg
    assert structure_size(cfg, "attn_k") == 2 * cfg.d_head  # two key/value heads (GQA)
    assert total_neurons(cfg) == cfg.n_layers * (cfg.d_mlp + 2 * 4 * cfg.d_head + 2 * 2 * cfg.d_head)
    s = NeuronSet({"attn_v": [[1, 31], [0, 0]], "ffn": [[1, 127]]})
    assert NeuronSet.from_mask(s.to_mask(cfg)).to_dict() == s.to_dict()


def test_selection_rules():
    imp = torch.tensor([[[5.0, 0.0, 3.0, 1.0]]])
    ranks = plnd_module.descending_ranks(imp)
    assert ranks.tolist() == [[[0, 3, 1, 2]]]
    assert Selection("top_k", 2).activated(imp, ranks).tolist() == [[[True, False, True, False]]]
    assert Selection("top_fraction", 0.5).activated(imp, ranks).tolist() == [[[True, False, True, False]]]
    assert Selection("threshold", 1.0).activated(imp, ranks).tolist() == [[[True, False, True, True]]]
    # A neuron with no importance is never activated, even when k exceeds the non-zero ones.
    assert Selection("top_k", 4).activated(imp, ranks).tolist() == [[[True, False, True, True]]]
    assert Selection(specificity=0.5).required(5) == 3 and Selection().required(5) == 5
    for bad in (dict(rule="top_p"), dict(value=0.0), dict(rule="top_k", value=2.5), dict(specificity=1.5)):
        with pytest.raises(ValueError):
            Selection(**bad)


def _per_document(model, texts):
    """Importances of each document run alone: the literal input to the selection."""
    out = []
    for toks in tokenize(model, texts):
        part = batch_importance(model, Batch([0], toks[None], torch.ones_like(toks)[None]))
        out.append({s: v[0] for s, v in part.importance.items()})
    return out


def test_summary_counts_equal_a_literal_selection_over_documents(tiny_gated):
    selection = Selection("top_k", 6, specificity=0.6)
    summary = language_importance(tiny_gated, "en", TEXTS, IDS, selection, batch_tokens=64, show_progress=False)
    docs = _per_document(tiny_gated, TEXTS)
    for s in STRUCTURES:
        stacked = torch.stack([d[s] for d in docs])  # [docs, layers, size]
        top = stacked.topk(6, dim=-1).indices
        activated = torch.zeros_like(stacked, dtype=torch.bool).scatter_(-1, top, True) & (stacked > 0)
        np.testing.assert_array_equal(summary.count[s], activated.sum(0).numpy())
        np.testing.assert_array_equal(summary.count_halves[s][0], activated[0::2].sum(0).numpy())
        np.testing.assert_allclose(summary.mean(s), stacked.mean(0).numpy(), rtol=1e-5, atol=1e-7)
        specific = specific_masks(summary, selection)[s]
        np.testing.assert_array_equal(specific, activated.sum(0).numpy() >= 3)


def test_every_document_sets_can_be_reselected_without_rerunning(tiny_gated):
    made_with = Selection("top_fraction", 0.05)
    summary = language_importance(tiny_gated, "en", TEXTS, IDS, made_with, show_progress=False)
    docs = _per_document(tiny_gated, TEXTS)
    for other in (Selection("top_k", 9), Selection("threshold", 0.5)):
        masks = specific_masks(summary, other)  # made_with is read from the summary
        for s in STRUCTURES:
            stacked = torch.stack([d[s] for d in docs])
            activated = other.activated(stacked, plnd_module.descending_ranks(stacked))
            np.testing.assert_array_equal(masks[s], activated.all(0).numpy(), err_msg=f"{other} {s}")
    with pytest.raises(ValueError, match="re-run"):
        specific_masks(summary, Selection("top_k", 9, specificity=0.5))


def test_summary_saves_and_loads(tmp_path, tiny):
    summary = language_importance(tiny, "en", TEXTS, IDS, show_progress=False)
    path = tmp_path / "en.safetensors"
    summary.save(path)
    loaded = ImportanceSummary.load(path)
    assert loaded.ids == IDS and loaded.n_tokens == summary.n_tokens and loaded.settings == summary.settings
    for s in STRUCTURES:
        np.testing.assert_array_equal(loaded.count[s], summary.count[s])
        np.testing.assert_array_equal(loaded.worst_rank[s], summary.worst_rank[s])
        np.testing.assert_allclose(loaded.total[s], summary.total[s], rtol=1e-6)
    np.testing.assert_allclose(loaded.positive, summary.positive)
    assert path.stat().st_mode & 0o044  # readable by others: results are for sharing


def test_exclusive_sets_drop_what_every_language_shares(tiny_gated):
    selection = Selection("top_fraction", 0.3)
    summaries = {
        lang: language_importance(tiny_gated, lang, texts, IDS[:3], selection, show_progress=False)
        for lang, texts in {
            "en": TEXTS[:3],
            "de": ["Im Anfang schuf Gott", "Und Gott sprach", "Es werde Licht"],
        }.items()
    }
    plain = language_sets(summaries, selection)
    exclusive = language_sets(summaries, Selection("top_fraction", 0.3, exclusive=True))
    shared = plain["en"] & plain["de"]
    assert len(shared) > 0
    for lang in summaries:
        assert exclusive[lang].to_dict() == (plain[lang] - shared).to_dict()
    result = PLNDResult.build(tiny_gated, summaries, selection)
    assert result.exclusive_sets()["en"].to_dict() == exclusive["en"].to_dict()
    assert result.overlap().shape == (2, 2) and result.overlap()[0, 1] == pytest.approx(
        plain["en"].jaccard(plain["de"])
    )


def test_lape_picks_the_neuron_that_fires_for_one_language():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.4, 0.6, size=(3, 2, 50))  # [languages, layers, d_mlp]: shared neurons
    probs[1, 0, 7] = 0.99  # fires for language 1 only
    probs[[0, 2], 0, 7] = 0.01
    masks = lape_masks(probs, LapeOptions(top_rate=0.01, filter_rate=0.95, bar_rate=0.95))
    assert masks[1, 0, 7] and masks.sum() == 1
    uniform = np.full((4, 1, 1), 0.3)
    assert lape_entropy(uniform)[0, 0] == pytest.approx(np.log(4))


def test_plnd_job_writes_sets_report_and_resumes(tmp_path, monkeypatch):
    def job():
        return run(
            RunOptions(model="tiny", languages=("en", "de", "zh")),
            {"plnd": plnd_slice.Options(documents=6, value=0.05)},
            tmp_path / "run",
            show_progress=False,
        )

    report = job()
    data = load_json(tmp_path / "run" / "plnd.json")
    assert set(data["sets"]) == {"en", "de", "zh"} and data["selection"]["value"] == 0.05
    result = PLNDResult.load(tmp_path / "run")
    assert all(len(s) > 0 for s in result.sets.values())
    assert set(result.lape) == {"en", "de", "zh"}
    table = result.table()
    assert all(r["n_documents"] == 6 and r["all"] == sum(r[s] for s in STRUCTURES) for r in table)
    html = report.read_text()
    assert "PLND: language-specific neurons" in html and "Jaccard" in html

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a finished language")

    monkeypatch.setattr(plnd_analysis, "language_importance", must_not_run)
    job()
    assert PLNDResult.load(tmp_path / "run").to_dict() == result.to_dict()


def test_bad_plnd_settings_are_refused_early():
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="structure"):
        plnd_slice.Options(structures=("mlp",))
    with pytest.raises(WorkbenchError, match="top_fraction"):
        plnd_slice.Options(value=3.0)
