"""The package's layout and its layer contract (docs/architecture.md): domain packages, tests that
mirror them, the public names of ``import workbench as wb``, and a contract that does catch an
upward import."""

import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import workbench as wb

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _layers() -> list[str]:
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_only_the_entry_points_stay_at_the_top():
    """Everything else lives in a domain package."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "errors.py"]


def test_every_package_is_in_the_layer_contract():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages | {"errors"} == set(_layers())


def test_tests_mirror_the_packages():
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= set(_layers()), folders - set(_layers())


def test_every_public_name_is_what_it_names():
    """``import workbench as wb`` keeps the names notebooks use, each loaded on first use, and no
    subpackage shadows one (``wb.run`` is the job's function)."""
    for name, module in wb._EXPORTS.items():
        assert getattr(wb, name) is getattr(importlib.import_module(module), name), name
    assert wb.analyses is importlib.import_module("workbench.analyses")


def test_the_package_docstring_lists_every_registered_analysis():
    """The package's docstring names the analyses ``REGISTRY`` holds, in its order."""
    text = " ".join((wb.__doc__ or "").split())
    listing = text.split("in run order:", 1)[1].split("(", 1)[0]
    assert [name.strip("`") for name in listing.replace(",", " ").split()] == list(wb.analyses.REGISTRY)


def test_all_lists_the_public_names():
    """``__all__`` (what editors and ``from workbench import *`` see) names exactly the lazy exports."""
    assert set(wb.__all__) == {"__version__", "analyses", *wb._EXPORTS}


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_contract_holds():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    "module, upward",
    [
        ("runs/store.py", "workbench.analyses"),
        ("models/catalog.py", "workbench.zoo.presets"),
        ("neurons/lape.py", "workbench.lens.readout"),
        ("analyses/clt_steer/analysis.py", "workbench.analyses.clt_graph.analysis"),
    ],
)
def test_the_contract_catches_an_upward_import(tmp_path, module, upward):
    """A lower layer importing a higher one, a sibling, or one analysis another, breaks a contract (in a copy)."""
    copy = tmp_path / "workbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\nimport {upward}  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and upward in result.stdout
