import json
import subprocess
import sys

import pytest

from workbench.analyses import ablate, loss, plnd
from workbench.analyses.loss import analysis as loss_analysis
from workbench.cli import main
from workbench.errors import ResultsMismatchError, UnknownLanguageError, WorkbenchError
from workbench.interventions.perplexity import LossResult
from workbench.runs import job as job_module
from workbench.runs.job import run
from workbench.runs.options import RunOptions
from workbench.runs.results import load_json


def _run(tmp_path, analyses=None, **kw):
    options = RunOptions(**{"model": "tiny", "languages": ("en", "de", "zh"), **kw})
    return run(options, analyses or {"loss": loss.Options(documents=4)}, tmp_path / "run", show_progress=False)


def test_run_writes_results_manifest_and_self_contained_report(tmp_path):
    report = _run(tmp_path)
    out = tmp_path / "run"
    manifest = load_json(out / "manifest.json")
    assert manifest["model"]["spec"] == "tiny"
    assert manifest["corpus"]["translations"]["de"]["name"] == "Schlachter 1951"
    assert manifest["languages"] == ["en", "de", "zh"]
    assert manifest["run"]["seed"] == 0 and manifest["analyses"]["loss"]["options"] == {"documents": 4}
    assert "transformer-lens" in manifest["versions"] and manifest["versions"]["workbench"]
    table = LossResult.load(out).table()
    assert [r["language"] for r in table] == ["en", "de", "zh"]
    assert all(r["documents"] == 4 and r["loss"] > 0 for r in table)
    html = report.read_text()
    assert "Per-language loss" in html and "Plotly.newPlot" in html and "class='verdict'" in html
    # plotly.js is inlined (no external script), so the file works offline.
    assert "<script src=" not in html and len(html) > 1_000_000


def test_rerun_resumes_from_saved_parts(tmp_path, monkeypatch):
    _run(tmp_path)
    first = LossResult.load(tmp_path / "run").table()

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a finished language")

    monkeypatch.setattr(loss_analysis, "language_loss", must_not_run)
    _run(tmp_path)
    assert LossResult.load(tmp_path / "run").table() == first


def test_interrupted_run_keeps_finished_languages(tmp_path, monkeypatch):
    real = loss_analysis.language_loss
    done = []

    def stop_at_zh(model, lang, *args, **kwargs):
        if lang == "zh":
            raise KeyboardInterrupt
        done.append(lang)
        return real(model, lang, *args, **kwargs)

    monkeypatch.setattr(loss_analysis, "language_loss", stop_at_zh)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    (folder,) = (tmp_path / "run" / "parts").iterdir()
    assert folder.name.startswith("loss-") and sorted(p.name for p in folder.iterdir()) == ["de.json", "en.json"]
    monkeypatch.setattr(loss_analysis, "language_loss", real)
    _run(tmp_path)
    assert len(LossResult.load(tmp_path / "run").table()) == 3


def test_other_run_settings_in_same_folder_are_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(ResultsMismatchError, match="seed"):
        _run(tmp_path, seed=1)


def test_other_analysis_options_redo_it_and_drop_what_depends_on_it(tmp_path):
    _run(tmp_path, {"plnd": plnd.Options(documents=4), "ablate": ablate.Options(documents=2, new_tokens=0)})
    manifest = load_json(tmp_path / "run" / "manifest.json")
    assert set(manifest["analyses"]) == {"plnd", "ablate"}
    old = manifest["analyses"]["plnd"]["fingerprint"]
    _run(tmp_path, {"plnd": plnd.Options(documents=6)})
    manifest = load_json(tmp_path / "run" / "manifest.json")
    # plnd was redone with the new options (new parts), ablate rested on the old sets: dropped.
    assert set(manifest["analyses"]) == {"plnd"} and manifest["analyses"]["plnd"]["fingerprint"] != old
    parts = sorted(p.name.split("-")[0] for p in (tmp_path / "run" / "parts").iterdir())
    assert parts == ["ablate", "plnd", "plnd"]
    assert "Deactivation" not in (tmp_path / "run" / "report.html").read_text()


def test_bad_language_fails_before_the_model_loads(tmp_path, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("model loaded before input was checked")

    monkeypatch.setattr(job_module, "load_run_model", no_load)
    with pytest.raises(UnknownLanguageError, match="available|Available"):
        _run(tmp_path, languages=("en", "klingon"))


def test_analysis_languages_outside_the_run_fail_before_the_model_loads(tmp_path, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("model loaded before input was checked")

    monkeypatch.setattr(job_module, "load_run_model", no_load)
    with pytest.raises(WorkbenchError, match="--ablate-languages fr are not among the run's"):
        _run(tmp_path, {"ablate": ablate.Options(languages=("fr",))})


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for command in (
        "run",
        "loss",
        "lens",
        "plnd",
        "ablate",
        "finetune",
        "ffn",
        "export",
        "models",
        "corpora",
        "prepare",
        "report",
    ):
        assert command in text


def test_cli_options_come_from_the_slices(capsys):
    """Every Options field is a flag with its default in the help; the analysis command takes its
    own fields bare and prefixed, those it requires prefixed."""
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    text = capsys.readouterr().out
    assert "--seeds" in text and "--ablate-seeds" in text and "--plnd-documents" in text
    assert "(default: 32)" in text  # plnd documents, defined once in plnd.Options
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--loss-documents", "--lens-k", "--plnd-rule", "--ablate-sets", "--finetune-lr", "--ffn-positions"):
        assert flag in text


def test_cli_models_and_corpora(capsys):
    assert main(["models"]) == 0
    assert "gemma-3-270m" in capsys.readouterr().out
    assert main(["corpora"]) == 0
    out = capsys.readouterr().out
    assert "sw " in out and "Swahili Union Version 1997" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--model", "tiny", "--languages", "en,xx"], "xx"),
        (["run", "--loss-documents", "0"], "--loss-documents must be at least 1"),
        (["plnd", "--documents", "0"], "--plnd-documents must be at least 1"),
        (["plnd", "--rule", "top_fraction", "--value", "2"], "top_fraction"),
        (["run", "--analyses", "loss,nothing"], "Unknown analysis nothing"),
        (["run", "--analyses", "loss", "--ablate-seeds", "2"], "not among the analyses"),
        (["ablate", "--model", "tiny", "--languages", "en,de", "--ablate-languages", "fr"], "not among the run's"),
        (["report", "/nonexistent/folder"], "not a results folder"),
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, capsys, args, expected):
    code = main([*args, "--out", str(tmp_path / "out"), "--quiet"] if args[0] != "report" else args)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error:") and expected in err and "Traceback" not in err


def test_cli_checks_input_without_importing_torch():
    """--help and input errors answer before anything heavy is imported (so within a second or two)."""
    code = (
        "import sys\n"
        "from workbench.cli import main\n"
        "assert main(['run', '--loss-documents', '0']) == 2\n"
        "assert main(['plnd', '--documents', '-1', '--quiet']) == 2\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'transformers', 'datasets', 'plotly') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_cli_run_and_report(tmp_path, capsys):
    out = tmp_path / "r"
    args = [
        "run",
        "--model",
        "tiny",
        "--languages",
        "en,fr",
        "--analyses",
        "loss",
        "--loss-documents",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    assert "Report:" in capsys.readouterr().out
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists()
    assert json.loads((out / "manifest.json").read_text())["analyses"]["loss"]["options"]["documents"] == 3


def test_report_of_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({"analyses": {"loss": {}}}))
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished analysis" in capsys.readouterr().err
