"""Execute the notebooks for the documentation site, keeping their figures (``make docs``).

Each ``notebooks/NAME.ipynb`` runs top to bottom in its own folder, as the tests run it, and is
saved with its outputs to ``OUT/notebooks/NAME.ipynb`` (``build/docs`` by default), where
``docs/hooks.py`` finds it. A plotly figure is kept as an HTML ``<div>`` that draws itself with the
site's own plotly.js once the page has loaded: no copy of plotly.js per notebook, no MathJax or
plotly.js from a CDN. The notebooks in the repository are left untouched.

    python docs/execute_notebooks.py [--out build/docs] [--only 00_quickstart,01_logit_lens_language_ratio]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import plotly.io as pio
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def figure_html(figure: dict) -> str:
    """A figure as a ``<div>`` whose script waits for the page (plotly.js is loaded at its end), as
    wide as the page's column (a fixed width would overflow it)."""
    layout = {k: v for k, v in figure.get("layout", {}).items() if k != "width"}
    html = pio.to_html(
        {**figure, "layout": layout},
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        validate=False,
        default_height="525px",
    )
    opening = re.search(r"<script[^>]*>", html)
    end = html.rindex("</script>")
    script = html[opening.end() : end]
    return f'{html[: opening.end()]}window.addEventListener("load", function () {{{script}}});{html[end:]}'


def with_html_figures(notebook) -> int:
    """Replace every plotly output by its HTML; return how many there were."""
    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                data["text/html"] = figure_html(data.pop(PLOTLY_MIME))
                count += 1
    return count


def execute(path: Path, out: Path) -> tuple[float, int]:
    """Run one notebook in its folder and save it with its outputs; return (seconds, figures)."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(
        notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - started
    figures = with_html_figures(notebook)
    target = out / "notebooks" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return seconds, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "docs"), help="folder for the executed notebooks")
    parser.add_argument("--only", default="", help="comma-separated notebook names (default: every notebook)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype")  # the kernel inherits it: figures as JSON
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # libraries' bars (weights loading) are noise on a page
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    paths = [p for p in sorted((ROOT / "notebooks").glob("*.ipynb")) if not wanted or p.stem in wanted]
    if wanted - {p.stem for p in paths}:
        parser.error(f"no notebook {', '.join(sorted(wanted - {p.stem for p in paths}))} in notebooks/")
    total = 0.0
    for path in paths:
        seconds, figures = execute(path, Path(args.out))
        total += seconds
        print(f"{path.name}: {seconds:.0f} s, {figures} figures", flush=True)
    print(f"{len(paths)} notebooks executed in {total:.0f} s into {Path(args.out) / 'notebooks'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
