"""MkDocs hooks: the pages that come from the tree, and a site that reads offline.

* **Home** is README.md and **Contributing** is CONTRIBUTING.md, their links rewritten for the site
  (``docs/x.md`` -> ``x.md``).
* **Notebooks**: every ``notebooks/*.ipynb``, rendered by mkdocs-jupyter with its outputs when
  ``make docs`` has executed it (``build/docs/notebooks/``, see ``docs/execute_notebooks.py``);
  otherwise the notebook as committed, without outputs (what CI's strict build checks).
* **API reference**: one page per package of ``workbench/``, one mkdocstrings block per module.
* **Offline**: MathJax (from the ``django-static-mathjax`` wheel) and plotly.js (from plotly) are
  copied into ``js/``; the CDN script tags mkdocs-jupyter writes (MathJax 2, require.js, mermaid)
  are removed. Nothing is fetched at build or view time.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.resources import files as package_files
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "build" / "docs"  # executed notebooks: build/docs/notebooks/NAME.ipynb
PACKAGE = ROOT / "workbench"
MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], processEscapes: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"}
};
document$.subscribe(() => { if (window.MathJax && MathJax.typesetPromise) { MathJax.typesetPromise(); } });
"""
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.I | re.S)
_REMOTE = re.compile(r"""\bsrc=["'](?:https?:)?//|\bsrc=["']["']|import\s*\(?\s*["']https?://""", re.I)


def packages() -> list[str]:
    """The packages (and top-level modules) of ``workbench/`` in layer order, top first: the layer contract's list."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    names = [name.strip() for layer in layers for name in layer.split("|")]
    return [name for name in names if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()]


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def notebook_title(path: Path) -> str:
    """The notebook's first heading, else its file name."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def readme_for_site(text: str) -> str:
    """README.md (or CONTRIBUTING.md) as a site page: links into docs/ become links between pages."""
    return re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", text).replace("](CONTRIBUTING.md)", "](contributing.md)")


def api_page(package: str) -> str:
    """The API page of one package: its docstring, then every module's."""
    folder = PACKAGE / package
    modules = sorted(
        p.parent if p.name == "__init__.py" else p
        for p in folder.rglob("*.py")
        if p.name != "__main__.py" and p != folder / "__init__.py"
    )  # a sub-package (clt/formats/) is rendered from its __init__, before its modules
    if not folder.is_dir():  # a top-level module (errors.py): one block, its members shown
        return f"# `workbench.{package}`\n\n::: workbench.{package}\n    options:\n      show_root_heading: false\n"
    lines = [
        f"# `workbench.{package}`",
        "",
        f"::: workbench.{package}",
        "    options:",
        "      show_root_heading: false",
        "      members: false",
        "",
    ]
    for path in modules:
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        lines += [f"::: {dotted}", ""]
    return "\n".join(lines)


def on_config(config):
    """Home first; Notebooks, the API reference and Contributing last, built from the tree."""
    config.nav = [
        {"Home": "index.md"},
        *config.nav,
        {"Notebooks": [{notebook_title(p): f"notebooks/{p.name}"} for p in notebooks()]},
        {"API reference": [{f"workbench.{pkg}": f"api/{pkg}.md"} for pkg in packages()]},
        {"Contributing": "contributing.md"},
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config) -> Files:
    generated = {
        "index.md": readme_for_site((ROOT / "README.md").read_text(encoding="utf-8")),
        "contributing.md": readme_for_site((ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")),
        "js/mathjax-config.js": MATHJAX_CONFIG,
        **{f"api/{pkg}.md": api_page(pkg) for pkg in packages()},
    }
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    copied = {
        "js/tex-svg.js": Path(str(package_files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg.js")),
        "js/plotly.min.js": Path(str(package_files("plotly") / "package_data" / "plotly.min.js")),
        **{f"assets/{p.name}": p for p in sorted((ROOT / "assets").glob("*.png"))},
    }
    for uri, path in copied.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    for path in notebooks():
        executed = EXECUTED / "notebooks" / path.name
        source = executed if executed.exists() and executed.stat().st_mtime >= path.stat().st_mtime else path
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(source.parent.parent),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """A docs page's link to the repository's CONTRIBUTING.md points at the site's Contributing page."""
    return markdown.replace("](../CONTRIBUTING.md)", "](contributing.md)")


def on_post_page(output: str, page, config) -> str:
    """No script from a CDN (nor an empty ``src``): MathJax 3 and plotly.js come from the site itself."""
    return _SCRIPT.sub(lambda m: "" if _REMOTE.search(m.group(1)) or _REMOTE.search(m.group(2)) else m.group(0), output)
