"""The documentation site: it builds strictly, holds every page it promises, and loads nothing
from the network (no fonts, scripts or styles from a CDN); notebook figures become HTML that
draws with the site's own plotly.js."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _docs_module(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _docs_module("hooks")
execute_notebooks = _docs_module("execute_notebooks")

REMOTE = re.compile(
    r"""<script[^>]*\bsrc=["'](?:https?:)?//|<link[^>]*\bhref=["'](?:https?:)?//|@import\s+url\(["']?https?://"""
    r"""|import\s*\(?\s*["']https?://|fonts\.googleapis""",
    re.I,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_every_promised_page_is_built(site):
    for page in ["index.html", "methods/index.html", "architecture/index.html", "plnd/index.html"]:
        assert (site / page).exists(), page
    for package in hooks.packages():
        assert (site / "api" / package / "index.html").exists(), package
    for notebook in hooks.notebooks():
        assert (site / "notebooks" / notebook.stem / "index.html").exists(), notebook.name
    for script in ["tex-svg.js", "plotly.min.js", "mathjax-config.js"]:
        assert (site / "js" / script).stat().st_size > 0, script


def test_the_home_page_is_the_readme_with_site_links(site):
    home = (site / "index.html").read_text()
    assert "Set-up: two commands" in home and "make demo" in home
    assert 'href="docs/' not in home  # README's docs/ links point at the site's pages
    assert 'src="assets/loss.png"' in home and (site / "assets" / "loss.png").exists()


def test_the_api_reference_comes_from_the_docstrings(site):
    page = (site / "api" / "neurons" / "index.html").read_text()
    assert "workbench.neurons.plnd" in page and "language_sets" in page


AUTOREF = re.compile(r'<a class="autorefs autorefs-internal"[^>]*href="([^"]+)"')
SPHINX_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|obj|exc):")


def test_api_pages_link_their_cross_references(site):
    """A docstring's ``[`name`][workbench.x.name]`` is rendered as a link to that object's anchor,
    across pages too, and no Sphinx role is left as text."""
    models = (site / "api" / "models" / "index.html").read_text()
    links = AUTOREF.findall(models)
    assert "../errors/#workbench.errors" in links, links[:20]  # models' docstrings point at the errors page
    for page in (site / "api").rglob("index.html"):
        text = page.read_text()
        assert not SPHINX_ROLE.search(re.sub(r"<[^>]+>", "", text)), page
        for link in AUTOREF.findall(text):
            target_page, _, anchor = link.partition("#")
            target = (page.parent / target_page / "index.html").resolve() if target_page else page
            assert f'id="{anchor}"' in target.read_text(), (page, link)


def test_contributing_is_a_page_of_the_site(site):
    page = (site / "contributing" / "index.html").read_text()
    assert "make lint" in page and "72 characters" in page
    assert 'href="../architecture/"' in page  # CONTRIBUTING.md's docs/ link points at the site's page


def test_nothing_is_fetched_from_the_network(site):
    offenders = {}
    for path in site.rglob("*.html"):
        found = REMOTE.findall(path.read_text(errors="ignore"))
        if found:
            offenders[str(path.relative_to(site))] = found[:3]
    assert not offenders, offenders


def test_a_notebook_figure_becomes_html_drawn_after_load():
    notebook = nbformat.v4.new_notebook()
    figure = go.Figure(go.Bar(y=[1, 2, 3])).to_plotly_json()
    output = nbformat.v4.new_output("display_data", data={execute_notebooks.PLOTLY_MIME: figure})
    notebook.cells = [nbformat.v4.new_code_cell("fig.show()", outputs=[output])]
    assert execute_notebooks.with_html_figures(notebook) == 1
    html = notebook.cells[0].outputs[0]["data"]["text/html"]
    assert execute_notebooks.PLOTLY_MIME not in notebook.cells[0].outputs[0]["data"]
    assert 'window.addEventListener("load"' in html and "Plotly.newPlot" in html
    assert "cdn" not in html.lower() and len(html) < 20_000  # no plotly.js or MathJax inlined or fetched


def test_readme_links_become_site_links():
    text = "See [docs/plnd.md](docs/plnd.md) and [the notebook](notebooks/02_plnd_language_neurons.ipynb)."
    assert hooks.readme_for_site(text) == (
        "See [docs/plnd.md](plnd.md) and [the notebook](notebooks/02_plnd_language_neurons.ipynb)."
    )
