import json
from pathlib import Path

import numpy as np
import pytest

from workbench.analyses import finetune
from workbench.analyses.finetune.analysis import training_ids, verdict
from workbench.cli import main
from workbench.data.corpus import BibleCorpus
from workbench.errors import WorkbenchError
from workbench.interventions.enhancement import (
    EnhancementOptions,
    EnhancementResult,
    EnhancementRun,
    gain,
    run_enhancement,
)
from workbench.interventions.finetune import NeuronDelta
from workbench.interventions.measures import MeasureMemo, Measures
from workbench.neurons.sets import NeuronSet


def _m(loss, accuracy=0.5, fidelity=0.5):
    return Measures(loss, accuracy, fidelity, 10)


def test_gains_are_improvements():
    assert gain(_m(3.0, 0.4), _m(3.5, 0.3), "loss") == pytest.approx(0.5)
    assert gain(_m(3.0, 0.4), _m(3.5, 0.3), "accuracy") == pytest.approx(0.1)
    assert gain(_m(4.0), _m(3.5), "loss") == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="Unknown measure"):
        gain(_m(1), _m(1), "bleu")


def test_tables_on_hand_made_values(tmp_path):
    baseline = {"en": _m(3.0), "de": _m(4.0), "fr": _m(5.0), "sw": _m(6.0)}
    record = {"steps": 3, "tokens": 100, "seconds": 1.5, "parameters": 640}
    runs = [
        EnhancementRun(
            "de",
            "language",
            400,
            10,
            record,
            [5.0, 4.0],
            {"en": _m(2.9), "de": _m(3.5), "fr": _m(5.1), "sw": _m(5.9)},
            "",
        ),
        EnhancementRun(
            "de",
            "random",
            400,
            10,
            record,
            [5.0, 4.9],
            {"en": _m(3.0), "de": _m(3.9), "fr": _m(5.0), "sw": _m(6.0)},
            "",
        ),
    ]
    result = EnhancementResult(["en", "de", "fr", "sw"], ["de"], baseline, runs, {"sizes": [400]}, {})
    own, control = result.table("loss")
    assert own["target gain"] == pytest.approx(0.5) and own["English gain"] == pytest.approx(0.1)
    assert own["other languages: mean gain"] == pytest.approx(0.0)  # fr -0.1, sw +0.1
    assert own["other languages: worst gain"] == pytest.approx(-0.1)
    assert control["target gain"] == pytest.approx(0.1)
    np.testing.assert_allclose(result.gain_matrix()[0], [0.1, 0.5, -0.1, 0.1], atol=1e-12)
    result.save(tmp_path)
    assert EnhancementResult.load(tmp_path).to_dict() == result.to_dict()

    assert verdict(result).startswith("de, 10 neurons on 400 documents: de loss -0.500 nats/token")


def _categories(model, langs):
    return {lang: np.zeros(model.cfg.d_vocab, dtype=np.int8) for lang in langs}


def test_experiment_trains_every_run_and_resumes_without_training_again(tiny, tmp_path, monkeypatch):
    docs = [
        tiny.to_tokens(t)[0] for t in ["Im Anfang schuf Gott Himmel und Erde.", "Und die Erde war wüst und leer."] * 2
    ]
    held = {
        "en": [tiny.to_tokens("And God said, Let there be light.")[0]],
        "de": [tiny.to_tokens("Und Gott sprach.")[0]],
    }
    sets = {"de": NeuronSet({"ffn": [[0, 1], [1, 2]], "attn_v": [[1, 3]]})}
    options = EnhancementOptions(sizes=(2, 4), random_size=2, lr=1e-2)

    def experiment():
        memo = MeasureMemo(tmp_path / "measurements.json")
        return run_enhancement(
            tiny, {"de": docs}, sets, held, _categories(tiny, held), options, folder=tmp_path, memo=memo
        )

    result = experiment()
    assert [r.key for r in result.runs] == ["de/language/2", "de/language/4", "de/random/2"]
    assert all(len(r.losses) == r.record["steps"] > 0 for r in result.runs)
    assert result.runs[0].after["de"].loss != result.baseline["de"].loss
    saved = NeuronDelta.load(tmp_path / result.runs[2].delta_file)
    assert len(saved.neurons) == 3 and saved.neurons.to_dict() != sets["de"].to_dict()  # the random control
    assert saved.meta["kind"] == "random" and saved.meta["documents"] == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed experiment must not train again")

    monkeypatch.setattr("workbench.interventions.enhancement.train_neurons", no_training)
    again = experiment()
    assert again.to_dict() == result.to_dict()


def test_too_few_training_documents_are_refused(tiny):
    docs = [tiny.to_tokens("Im Anfang.")[0]]
    with pytest.raises(ValueError, match="fewer than 4 training documents"):
        run_enhancement(
            tiny,
            {"de": docs},
            {"de": NeuronSet({"ffn": [[0, 1]]})},
            {"de": docs},
            _categories(tiny, ["de"]),
            EnhancementOptions(sizes=(4,), random_size=0),
        )


def test_finetune_command_writes_results_report_and_exports_a_delta(tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "ft"
    args = [
        "finetune",
        "--model",
        "tiny",
        "--languages",
        "en,de,sw",
        "--plnd-documents",
        "4",
        "--sizes",
        "2,4",
        "--random-size",
        "2",
        "--documents",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    result = EnhancementResult.load(out)
    assert result.targets == ["de", "sw"] and result.languages == ["en", "de", "sw"]
    assert len(result.runs) == 6
    assert "Enhancing a language" in (out / "report.html").read_text()
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                str(out / result.runs[0].delta_file),
                "--model",
                "tiny",
                "--out",
                str(tmp_path / "full.safetensors"),
            ]
        )
        == 0
    )
    assert "blocks.0.mlp.W_in" in load_file(str(tmp_path / "full.safetensors"))
    assert (
        main(
            [
                "export",
                str(out / result.runs[0].delta_file),
                "--model",
                "tiny-gated",
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 2
    )
    assert "does not fit" in capsys.readouterr().err

    task_file = tmp_path / "mgsm.jsonl"
    task_file.write_text(
        "".join(
            json.dumps({"language": lang, "question": "2 + 2?", "answer_number": 4}) + "\n" for lang in ("en", "de")
        )
    )
    args = [
        "task",
        "--task",
        "mgsm",
        "--file",
        str(task_file),
        "--deltas-from",
        str(out),
        "--languages",
        "en,de",
        "--model",
        "tiny",
        "--out",
        str(tmp_path / "task"),
    ]
    assert main(args) == 0
    saved = json.loads((tmp_path / "task" / "task-mgsm-finetune.json").read_text())
    assert [r["run"] for r in saved["rows"]] == [Path(r.delta_file).stem for r in result.runs]


def test_training_documents_are_nested_samples_outside_plnd():
    assert finetune.Options().targets(["en", "de", "sw"]) == ["de", "sw"]
    corpus = BibleCorpus()
    used = set(corpus.sample_ids(["en", "de", "sw"], 4, "analysis", 0))
    ids = training_ids(corpus, "de", 8, used, seed=0)
    assert len(set(ids)) == 8 and not used & set(ids) and ids == training_ids(corpus, "de", 8, used, seed=0)
    assert set(ids) <= set(corpus.ids(["de"], "analysis"))


def test_finetune_settings_are_checked_early(tmp_path):
    with pytest.raises(WorkbenchError, match="not among the run's"):
        finetune.Options(languages=("sw",)).targets(["en", "de"])
    with pytest.raises(WorkbenchError, match="--finetune-sizes must be at least 1"):
        finetune.Options(sizes=(0,))
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", "--model", "tiny", "--finetune-sizes", "a,b", "--out", str(tmp_path)])
    assert exit_.value.code == 2


def test_empty_neuron_sets_are_refused_before_training(tmp_path, capsys, monkeypatch):
    """tiny-gated has no language-specific neurons at the default specificity: a clear error that
    names the options to change, before any training."""

    def no_training(*args, **kwargs):
        raise AssertionError("trained an empty set")

    monkeypatch.setattr("workbench.interventions.enhancement.train_neurons", no_training)
    args = [
        "finetune",
        "--model",
        "tiny-gated",
        "--languages",
        "en,de",
        "--plnd-documents",
        "6",
        "--sizes",
        "2",
        "--random-size",
        "0",
        "--documents",
        "2",
        "--out",
        str(tmp_path / "ft"),
        "--quiet",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error:") and "are empty" in err and "--plnd-specificity" in err
