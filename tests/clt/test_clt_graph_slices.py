"""The clt-graph and clt-diff slices run as a job on a tiny model: graphs per parallel prompt and
language with their overlaps, exported as circuit-tracer JSON; a model diffed against itself (as a
model and as an empty change) changes nothing and a delta on one neuron does; results resume;
bad input is refused by name; ``workbench graph`` and ``workbench diff`` are the group's actions."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from workbench.analyses import clt_diff, clt_graph, clt_train
from workbench.cli import main
from workbench.clt.graphs.export import read_viewer_folder
from workbench.clt.graphs.graph import jaccard
from workbench.errors import WorkbenchError
from workbench.interventions.finetune import NeuronDelta, neuron_indices
from workbench.models.loading import tiny_model
from workbench.neurons.sets import NeuronSet
from workbench.runs.job import run
from workbench.runs.options import OptionError, RunOptions
from workbench.runs.report import collect_figures

TRAIN = clt_train.Options(features=32, documents=12, tokens=3000, batch=256, heldout=4, block_documents=36)


def _run(folder, analyses, **kw):
    options = RunOptions(**{"model": "tiny", "languages": ("en", "de", "zh"), **kw})
    return run(options, {"clt-train": TRAIN, **analyses}, folder, show_progress=False)


def test_graph_slice_overlaps_views_export_and_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    report = _run(out, {"clt-graph": clt_graph.Options(tasks=("weekday", "antonym"), max_features=64, export=True)})
    result = clt_graph.Result.load(out)
    assert {(r.task, r.language) for r in result.rows} >= {("weekday", "en"), ("weekday", "zh"), ("antonym", "de")}
    assert set(result.jaccard) == {"weekday", "antonym", "all"} and len(result.jaccard["all"]) == 2
    for row in result.rows:
        assert 0 <= row.replacement <= 1 and 0 <= row.completeness <= 1 and row.nodes <= min(row.active, 64)
        assert row.answer_rank >= 0 and (out / row.part / "graph.npz").is_file()
    pairs = []  # the overlaps are the means of the per-pair, per-item values
    for item in {r.item for r in result.rows if r.task == "weekday"}:
        rows = [r for r in result.rows if (r.task, r.item) == ("weekday", item)]
        pairs += [[jaccard(set(x), set(y)) for x, y in zip(a.kept, b.kept)] for a, b in itertools.combinations(rows, 2)]
    np.testing.assert_allclose(result.jaccard["weekday"], np.nanmean(np.array(pairs, float), 0))
    assert len(result.views) == 3 and {v["language"] for v in result.views} == {"en", "de", "zh"}
    first = next(r for r in result.rows if r.task == "weekday" and r.language == "en")
    exported = json.loads((out / "graphs" / f"weekday-{first.item}-en.json").read_text(encoding="utf-8"))
    assert {"metadata", "qParams", "nodes", "links"} <= set(exported)
    assert set(read_viewer_folder(out / "graphs")) == {f"{r.task}-{r.item}-{r.language}" for r in result.rows}
    assert "Attribution graphs across languages" in report.read_text()
    assert {"clt_graph_jaccard", "clt_graph_kept"} <= set(collect_figures(out))

    def must_not_attribute(*args, **kwargs):
        raise AssertionError("recomputed a finished graph")

    from workbench.analyses.clt_graph import analysis

    monkeypatch.setattr(analysis, "attribute", must_not_attribute)
    _run(out, {"clt-graph": clt_graph.Options(tasks=("weekday", "antonym"), max_features=64, export=True)})
    assert clt_graph.Result.load(out).jaccard == result.jaccard


def test_graph_targets_and_bad_input(tmp_path):
    out = tmp_path / "run"
    _run(out, {"clt-graph": clt_graph.Options(prompt="Hello wor", target="token:l")}, languages=("en",))
    result = clt_graph.Result.load(out)
    assert len(result.rows) == 1 and result.rows[0].targets == ["'l'"] and result.jaccard == {}
    with pytest.raises(WorkbenchError, match="not one"):
        _run(tmp_path / "bad", {"clt-graph": clt_graph.Options(prompt="Hello", target="token:two tokens")})
    with pytest.raises(OptionError, match="target"):
        clt_graph.Options(target="nonsense")
    with pytest.raises(WorkbenchError, match="[Uu]nknown task"):
        _run(tmp_path / "bad2", {"clt-graph": clt_graph.Options(tasks=("nonsense",))})


def _delta(folder, change: float):
    model = tiny_model("tiny")
    neurons = NeuronSet({"ffn": np.array([[0, 5], [1, 9]])})
    index = neuron_indices(model, neurons)
    state = model.state_dict()
    values = {path: (idx, state[path].reshape(-1)[idx] + change) for path, idx in index.items()}
    return NeuronDelta(values, neurons, {}).save(folder / "delta.safetensors")


def test_diff_slice_self_is_zero_and_a_delta_shows(tmp_path):
    out = tmp_path / "self"
    _run(out, {"clt-diff": clt_diff.Options(tuned="tiny", documents=6, top=3, task="weekday")})
    same = clt_diff.Result.load(out)
    assert same.changed == [] and all(row["mean |d frequency|"] == 0 for row in same.layers)
    assert all(b == t for rows in same.fvu.values() for b, t in rows)
    assert same.graph_overlap == pytest.approx([1.0, 1.0], nan_ok=True) or all(np.isnan(same.graph_overlap))
    assert same.graphs[0].kept == same.graphs[1].kept
    assert "Nothing changed" in clt_diff.verdict(same)
    unchanged = tmp_path / "unchanged"
    _run(
        unchanged, {"clt-diff": clt_diff.Options(tuned=str(_delta(tmp_path, 0.0)), documents=6, top=3, task="weekday")}
    )
    assert clt_diff.Result.load(unchanged).changed == []
    moved = tmp_path / "moved"
    report = _run(
        moved, {"clt-diff": clt_diff.Options(tuned=str(_delta(tmp_path, 3.0)), documents=6, top=3, task="weekday")}
    )
    diff = clt_diff.Result.load(moved)
    assert len(diff.changed) == 3 and diff.changed[0].change.change > 0
    assert all(c.change.layer == 1 for c in diff.changed)  # layer 0's MLP inputs come before the changed MLPs
    assert diff.layers[0]["mean |d frequency|"] == 0
    assert "Model diffing through the base transcoder" in report.read_text()
    assert {"clt_diff_layers", "clt_diff_fvu", "clt_diff_identity"} <= set(collect_figures(moved))


def test_diff_of_the_runs_own_finetune(tmp_path):
    """``--clt-diff-tuned finetune`` runs PLND and finetune first (part of clt-diff's fingerprint),
    diffs their delta, and follows the fine-tuned language's own features per layer."""
    from workbench.analyses import finetune, plnd
    from workbench.runs.job import fingerprints, resolve

    tuned = {
        "plnd": plnd.Options(documents=4, value=0.1, specificity=0.5),
        "finetune": finetune.Options(sizes=(4,), random_size=0, documents=2, epochs=1, lr=1e-2),
        "clt-train": clt_train.Options(features=16, documents=6, tokens=600, batch=128, heldout=2, block_documents=18),
    }
    diff_options = clt_diff.Options(tuned="finetune", documents=6, top=3, task="weekday")
    assert list(resolve({"clt-diff": diff_options})) == ["plnd", "finetune", "clt-train", "clt-diff"]
    run_options = RunOptions(model="tiny", languages=("en", "de", "zh"))
    prints = fingerprints(run_options, resolve({**tuned, "clt-diff": diff_options}))
    other = fingerprints(
        run_options,
        resolve({**tuned, "finetune": finetune.Options(sizes=(5,), random_size=0), "clt-diff": diff_options}),
    )
    assert prints["clt-train"] == other["clt-train"] and prints["clt-diff"] != other["clt-diff"]

    out = tmp_path / "run"
    _run(out, {**tuned, "clt-diff": diff_options})
    diff = clt_diff.Result.load(out)
    trained = finetune.Result.load(out).runs[0]
    assert diff.target == "de" == trained.target and diff.tuned == f"finetune: {trained.delta_file}"
    assert diff.changed and {r["language"] for r in diff.strength} <= {"en", "de", "zh"}
    for row in diff.strength:
        assert row["features"] > 0 and 0 <= row["frequency base"] <= 1 and 0 <= row["frequency fine-tuned"] <= 1
    said = clt_diff.verdict(diff)
    assert ("fine-tuned language de" in said) if diff.strength_change("de") else ("de has no specific features" in said)
    assert "clt_diff_strength" in collect_figures(out)
    with pytest.raises(WorkbenchError, match="--finetune-languages zh"):
        _run(out, {**tuned, "clt-diff": clt_diff.Options(tuned="finetune:zh", documents=6, top=3, task="weekday")})
    with pytest.raises(OptionError, match="ru is not among"):
        _run(out, {**tuned, "clt-diff": clt_diff.Options(tuned="finetune:ru", documents=6)})


def test_diff_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(WorkbenchError, match="No delta file"):
        _run(tmp_path / "a", {"clt-diff": clt_diff.Options(tuned=str(tmp_path / "none.safetensors"), documents=4)})
    with pytest.raises(WorkbenchError, match="differs from the run's model"):
        _run(tmp_path / "b", {"clt-diff": clt_diff.Options(tuned="tiny-gated", documents=4, task="weekday")})
    assert main(["diff", "--model", "tiny", "--languages", "en", "--out", str(tmp_path / "c")]) == 2
    assert "--clt-diff-tuned is needed" in capsys.readouterr().err


def test_cli_graph_and_diff_are_clt_actions(capsys):
    for argv in (["graph", "--help"], ["clt", "graph", "--help"], ["diff", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "results/clt" in text
