import json

import pytest

from workbench import job as job_module
from workbench.cli import main
from workbench.errors import ResultsMismatchError, UnknownLanguageError
from workbench.job import RunConfig, run
from workbench.results import load_json


def _config(tmp_path, **kw):
    base = dict(model="tiny", languages=["en", "de", "zh"], heldout_documents=4, out=tmp_path / "run")
    return RunConfig(**{**base, **kw})


def test_run_writes_results_manifest_and_self_contained_report(tmp_path):
    report = run(_config(tmp_path), show_progress=False)
    out = tmp_path / "run"
    manifest = load_json(out / "manifest.json")
    assert manifest["model"]["spec"] == "tiny"
    assert manifest["corpus"]["translations"]["de"]["name"] == "Schlachter 1951"
    assert manifest["languages"] == ["en", "de", "zh"]
    assert manifest["settings"]["heldout_documents"] == 4
    assert "transformer-lens" in manifest["versions"] and manifest["versions"]["workbench"]
    table = load_json(out / "loss.json")["table"]
    assert [r["language"] for r in table] == ["en", "de", "zh"]
    assert all(r["documents"] == 4 and r["loss"] > 0 for r in table)
    html = report.read_text()
    assert "Per-language loss" in html and "Plotly.newPlot" in html
    # plotly.js is inlined (no external script), so the file works offline.
    assert "<script src=" not in html and len(html) > 1_000_000


def test_rerun_resumes_from_saved_parts(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    run(cfg, show_progress=False)
    first = load_json(tmp_path / "run" / "loss.json")["table"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a finished language")

    monkeypatch.setattr(job_module, "language_loss", must_not_run)
    run(cfg, show_progress=False)
    assert load_json(tmp_path / "run" / "loss.json")["table"] == first


def test_interrupted_run_keeps_finished_languages(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    real = job_module.language_loss
    done = []

    def stop_at_zh(model, lang, *args, **kwargs):
        if lang == "zh":
            raise KeyboardInterrupt
        done.append(lang)
        return real(model, lang, *args, **kwargs)

    monkeypatch.setattr(job_module, "language_loss", stop_at_zh)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, show_progress=False)
    parts = sorted(p.name for p in (tmp_path / "run" / "parts").iterdir())
    assert parts == ["loss-de.json", "loss-en.json"]
    monkeypatch.setattr(job_module, "language_loss", real)
    run(cfg, show_progress=False)
    assert len(load_json(tmp_path / "run" / "loss.json")["table"]) == 3


def test_other_settings_in_same_folder_are_refused(tmp_path):
    run(_config(tmp_path), show_progress=False)
    with pytest.raises(ResultsMismatchError, match="seed"):
        run(_config(tmp_path, seed=1), show_progress=False)


def test_bad_language_fails_before_the_model_loads(tmp_path, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("model loaded before input was checked")

    monkeypatch.setattr(job_module, "load_model", no_load)
    with pytest.raises(UnknownLanguageError, match="available|Available"):
        run(_config(tmp_path, languages=["en", "klingon"]), show_progress=False)


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for command in ("run", "lens", "plnd", "ablate", "finetune", "export", "models", "corpora", "prepare", "report"):
        assert command in text


def test_cli_models_and_corpora(capsys):
    assert main(["models"]) == 0
    assert "gemma-3-270m" in capsys.readouterr().out
    assert main(["corpora"]) == 0
    out = capsys.readouterr().out
    assert "sw " in out and "Swahili Union Version 1997" in out


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    code = main(["run", "--model", "tiny", "--languages", "en,xx", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error:") and "xx" in err and "Traceback" not in err


def test_cli_run_and_report(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--model", "tiny", "--languages", "en,fr", "--heldout", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "Report:" in capsys.readouterr().out
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists()
    assert json.loads((out / "manifest.json").read_text())["settings"]["heldout_documents"] == 3
