"""The project's own files: declared dependencies, benchmark options, a self-contained repository."""

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DECLARED = {
    re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower().replace("-", "_")
    for d in PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
}
IMPORT_NAMES = {"transformer_lens": "transformer_lens", "safetensors": "safetensors", "sklearn": "scikit_learn"}


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.lower().replace("-", "_").split("==") for line in lines if "==" in line)


def test_transformers_floor_is_the_tested_version():
    """transformers 5.17 breaks TransformerLens's tokenizer set-up: the floor is the version the
    tests run on (the pin in constraints.txt), so a looser install cannot pick a broken one."""
    spec = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("transformers"))
    floor = re.search(r">=([\d.]+)", spec).group(1)
    assert floor == _pins()["transformers"], (spec, _pins()["transformers"])


def _notebook_imports(path: Path) -> set[str]:
    names = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_declared_packages(path):
    """A notebook may use the standard library, the workbench and what pyproject.toml declares
    (pandas, for one, is not: it only comes in through other packages)."""
    for name in _notebook_imports(path) - set(sys.stdlib_module_names) - {"workbench"}:
        assert IMPORT_NAMES.get(name, name).lower() in DECLARED, (
            f"{path.name} imports {name}, not a declared dependency"
        )


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("bench_*.py")), ids=lambda p: p.name)
def test_every_benchmark_takes_a_device(path):
    source = path.read_text()
    assert "add_device_argument(parser)" in source or 'add_argument("--device"' in source, path.name


def test_the_plnd_benchmark_parses_its_device_option():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_plnd.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--device" in out


def test_no_file_points_outside_the_repository():
    """A fresh clone stands alone: nothing refers to the shared folder beside the checkout."""
    needle = ".." + "/shared"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".ipynb", ".toml", ".txt", "Makefile"))
        and needle in (ROOT / name).read_text(errors="ignore")
    ]
    assert not offenders, offenders
