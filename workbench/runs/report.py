"""The self-contained HTML report of a results folder.

The report is rebuilt from the files in the folder (never from objects in memory), so it can be
regenerated at any time with ``workbench report FOLDER``. plotly.js is embedded once, so the
file opens offline in any browser. Each analysis listed in the folder's manifest contributes
the section its slice makes (``section`` of its slice, found in
[`workbench.runs.slices`][workbench.runs.slices]); this module only lays them out.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench.errors import MissingResultError
from workbench.runs import slices
from workbench.runs.results import atomic_write_bytes, read_manifest

REPORT = "report.html"
"""The report's file name in a results folder."""


@dataclass
class Section:
    """One part of the report: a title, explanatory HTML, a verdict, figures and tables.

    Attributes:
        title: The section's heading.
        intro: Explanatory HTML (trusted: written by the slice, not escaped).
        verdict: What the numbers say, in one sentence computed from them.
        figures: The section's figures, in order.
        tables: Tables, each a list of same-keyed rows.
    """

    title: str
    intro: str = ""
    verdict: str = ""
    figures: list[go.Figure] = field(default_factory=list)
    tables: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass
class Table:
    """Rows of same-keyed dicts that Jupyter shows as an HTML table (``_repr_html_``), as the report does."""

    rows: list[dict[str, Any]]

    def _repr_html_(self) -> str:
        return html_table(self.rows)


def html_table(rows: list[dict[str, Any]]) -> str:
    """A plain HTML table from a list of same-keyed dicts."""
    if not rows:
        return "<p><em>No rows.</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: object) -> str:
    """A table cell's text: floats to 4 significant digits, lists item by item."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def finished(folder: Path, manifest: dict[str, Any]) -> Iterator[tuple[ModuleType, object]]:
    """``(slice, result)`` of every analysis of the manifest whose result is in the folder."""
    for name in slices.names():
        if name not in manifest.get("analyses", {}):
            continue
        piece = slices.load_slice(name)
        try:
            yield piece, piece.Result.load(folder)
        except MissingResultError:
            continue


def collect_figures(folder: Path) -> dict[str, go.Figure]:
    """Every figure of a results folder by name (``loss``, ``plnd_layers``, ...), as the report shows them."""
    figures: dict[str, go.Figure] = {}
    for piece, result in finished(Path(folder), read_manifest(folder)):
        figures.update(piece.figures(result))
    return figures


def _header(manifest: dict[str, Any]) -> str:
    """The report's head: model, weights, corpus, languages, versions, translations and settings."""
    model, corpus = manifest.get("model", {}), manifest.get("corpus", {})
    rows = [
        ("Model", f"{model.get('name', '?')} (spec {model.get('spec', '?')}, route {model.get('route', '?')})"),
        ("Weights", model.get("weights", "?")),
        ("Corpus", corpus.get("name", "?")),
        ("Languages", ", ".join(manifest.get("languages", []))),
        ("Created", manifest.get("created", "?")),
        ("Versions", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
    ]
    meta = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    translations = corpus.get("translations")
    trans_html = ""
    if translations:
        trans_rows = [{"language": k, "translation": v["name"], "code": v["code"]} for k, v in translations.items()]
        trans_html = "<details><summary>Translations used</summary>" + html_table(trans_rows) + "</details>"
    settings = html.escape(
        json.dumps({"run": manifest.get("run", {}), "analyses": manifest.get("analyses", {})}, indent=1)
    )
    return (
        f"<table class='meta'>{meta}</table>{trans_html}"
        f"<details><summary>Settings</summary><pre>{settings}</pre></details>"
    )


_STYLE = (
    "\nbody{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;color:#222}\n"
    "h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}\n"
    "table{border-collapse:collapse;margin:.8em 0;font-size:.9em} "
    "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}\n"
    "th{background:#f5f5f5} p.verdict{font-weight:600;background:#f3f7fb;padding:.6em;border-left:3px solid #4C78A8} "
    "table.meta th{width:8em} pre{background:#f8f8f8;padding:.6em;overflow-x:auto}\n"
)


def render(manifest: dict[str, Any], sections: list[Section]) -> str:
    """The whole report as one HTML string (plotly.js inlined)."""
    parts = []
    for section in sections:
        figs = "".join(
            fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}) for fig in section.figures
        )
        tables = "".join(html_table(t) for t in section.tables)
        verdict = f"<p class='verdict'>{html.escape(section.verdict)}</p>" if section.verdict else ""
        parts.append(
            f"<section><h2>{html.escape(section.title)}</h2><p>{section.intro}</p>{verdict}{figs}{tables}</section>"
        )
    title = f"Multilingual workbench report: {manifest.get('model', {}).get('name', '')}"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{_header(manifest)}{''.join(parts)}</body></html>"
    )


def write_report(folder: Path) -> Path:
    """Build ``report.html`` in ``folder`` from the results saved there; return its path.

    Raises:
        MissingResultError: ``folder`` has no manifest, or no finished analysis yet.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    found = [piece.section(result) for piece, result in finished(folder, manifest)]
    if not found:
        raise MissingResultError(f"{folder} holds no finished analysis yet; run (or resume) the job that writes it.")
    path = folder / REPORT
    atomic_write_bytes(path, render(manifest, found).encode("utf-8"))
    return path
