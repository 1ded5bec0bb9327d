"""The Python examples in README.md and docs/*.md run against the current code.

Every fenced ```python block is collected. A block whose fence is preceded, on the line just
before it, by ``<!-- not-run -->`` is not executed (examples that need the Hugging Face hub or a
GPU); it must still compile and import only names that exist. The executed blocks of one file
run in order in one shared namespace, as a reader would type them, in a temporary working
directory. They load the real default model, so running them is an end-to-end test; the model is
loaded once for all files.

The fast tests below check without a model that every block compiles and that every
``from workbench... import name`` in it names something that exists.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = "<!-- not-run -->"
_OPEN = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One fenced python block: the line of its opening fence (1-based), its code, whether it runs."""

    path: Path
    line: int
    code: str
    run: bool

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """Every fenced python block of a Markdown file, in order (indented fences are dedented)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if not _OPEN.match(lines[i]):
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not _CLOSE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{i + 1}: a ```python fence is never closed.")
        marked = i > 0 and lines[i - 1].strip() == NOT_RUN
        code = textwrap.dedent("\n".join(lines[i + 1 : end]))
        blocks.append(Block(path, i + 1, code, run=not marked))
        i = end + 1
    return blocks


def doc_files() -> list[Path]:
    """README.md and docs/*.md that hold at least one python block."""
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in candidates if p.exists() and python_blocks(p)]


FILES = doc_files()
ALL_BLOCKS = [block for path in FILES for block in python_blocks(path)]


# ----------------------------------------------------------------------------- fast checks


def test_blocks_are_collected_and_the_marker_skips_one(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n<!-- not-run -->\n```python\nload_from_hub()\n```\n\n"
        "```sh\nnot python\n```\n\n* a list item:\n\n  ```python\n  y = x + 1\n  ```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.run) for b in blocks] == [
        (3, "x = 1", True),
        (8, "load_from_hub()", False),
        (18, "y = x + 1", True),
    ]
    namespace: dict = {}
    for block in blocks:
        if block.run:
            exec(compile(block.code, block.where, "exec"), namespace)
    assert namespace["y"] == 2
    (tmp_path / "open.md").write_text("```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="never closed"):
        python_blocks(tmp_path / "open.md")


def test_the_docs_have_examples():
    assert "plnd.md" in [p.name for p in FILES]
    assert any(block.run for block in ALL_BLOCKS)


def _importable(module, name: str) -> bool:
    """``from module import name`` works: an attribute, or a submodule (imported or not yet)."""
    if hasattr(module, name):
        return True
    try:
        return importlib.util.find_spec(f"{module.__name__}.{name}") is not None
    except ModuleNotFoundError:  # a module, not a package: it has no submodules
        return False


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_block_compiles_and_imports_existing_names(block):
    tree = ast.parse(block.code, filename=block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "workbench":
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if a.name != "*" and not _importable(module, a.name)]
            assert not missing, f"{block.where}: {node.module} has no {', '.join(missing)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "workbench":
                    importlib.import_module(alias.name)


# ----------------------------------------------------------------------------- running them

_MODELS: dict = {}


def _load_once(original):
    """``load_model`` that loads each (spec, options) once per test session."""
    signature = inspect.signature(original)

    def load_model(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple((name, repr(value)) for name, value in bound.arguments.items())
        if key not in _MODELS:
            _MODELS[key] = original(*args, **kwargs)
        return _MODELS[key]

    return load_model


@pytest.mark.e2e
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_examples_run(path, tmp_path, monkeypatch):
    import workbench.models.loading

    blocks = [b for b in python_blocks(path) if b.run]
    if not blocks:
        pytest.skip(f"every python block of {path.name} is marked {NOT_RUN}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(workbench.models.loading, "load_model", _load_once(workbench.models.loading.load_model))
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for block in blocks:
        try:
            exec(compile(block.code, block.where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the example at {block.where} failed: {type(exc).__name__}: {exc}") from exc


def test_readme_model_table_has_a_row_per_family():
    """The README's model table (docs/model_table.py, from the coverage matrix) lists every family
    the matrix tests, in its order, each loading as a HookedTransformer with every analysis run."""
    from workbench.models.families import FAMILIES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- model-table -->")[1].split("<!-- /model-table -->")[0]
    rows = [line.split(" | ") for line in block.strip().splitlines()[2:]]
    assert [row[0].strip("| ") for row in rows] == list(FAMILIES)
    assert all(row[3] == "HookedTransformer" and row[4:15] == ["✓"] * 11 for row in rows)
