"""Figures and the HTML page of a transcoder comparison. Drawing only: every function reads a finished result.

The page is the workbench report's layout ([`render`][workbench.runs.report.render]): a header
with the model, corpus, languages and versions, then one section with the verdict, the figures
(plotly, inline) and the tables.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.clt.runs.compare import Comparison
from workbench.data.languages import language_name
from workbench.runs.report import Section, render
from workbench.runs.results import atomic_write_bytes

PAGE = "compare.html"
"""The page's file name in the output folder."""


def quality_figure(result: Comparison) -> go.Figure:
    """Worst-language FVU and L0, and the dead share, per layer: one line per transcoder."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("FVU, worst language (lower is better)", "L0, highest language", "dead share, lowest language"),
    )
    for t in result.transcoders:
        worst = t.worst()
        layers = [q.layer for q, _ in worst]
        hover = [f"worst: {lang} · {language_name(lang)}" for _, lang in worst]
        for col, values in enumerate(
            ([q.fvu for q, _ in worst], [q.l0 for q, _ in worst], [q.dead for q, _ in worst]), start=1
        ):
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=values,
                    mode="lines+markers",
                    name=t.name,
                    legendgroup=t.name,
                    showlegend=col == 1,
                    text=hover if col == 1 else None,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_layout(title="Reconstruction per layer on held-out verses", height=380)
    return fig


def loss_figure(result: Comparison) -> go.Figure:
    """Per language: the share of the zero-ablation gap each transcoder recovers, and the loss its splice adds."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("zero-ablation gap recovered (1: as good as the MLPs)", "loss added by splicing (nats/token)"),
    )
    for t in result.transcoders:
        langs = list(t.languages)
        labels = [f"{lang} · {language_name(lang)}" for lang in langs]
        scores = [t.languages[lang] for lang in langs]
        common = {"name": t.name, "legendgroup": t.name}
        fig.add_trace(go.Bar(x=labels, y=[s.recovered for s in scores], **common), row=1, col=1)
        fig.add_trace(
            go.Bar(x=labels, y=[s.spliced - s.original for s in scores], showlegend=False, **common), row=1, col=2
        )
    fig.add_hline(y=1, row=1, col=1, line_dash="dot", line_color="grey")  # pyright: ignore[reportArgumentType]
    fig.update_layout(title="The spliced model's next-token loss per language", barmode="group", height=380)
    return fig


def graph_figure(result: Comparison) -> go.Figure:
    """Each graph prompt's replacement and completeness scores, one box per transcoder."""
    fig = go.Figure()
    for t in result.transcoders:
        kinds = ["replacement"] * len(t.graphs) + ["completeness"] * len(t.graphs)
        values = [g.replacement for g in t.graphs] + [g.completeness for g in t.graphs]
        hover = [f"{g.task} {g.item} ({g.language})" for g in t.graphs] * 2
        fig.add_trace(go.Box(x=kinds, y=values, name=t.name, boxpoints="all", text=hover))
    fig.update_layout(
        title="Attribution graph scores per prompt (1: every path runs through features)",
        boxmode="group",
        yaxis_title="score",
        yaxis_range=[0, 1.05],
        height=360,
    )
    return fig


def figures(result: Comparison) -> dict[str, go.Figure]:
    """The comparison's figures by name (the graph scores only where graphs were made)."""
    out = {"compare_quality": quality_figure(result), "compare_loss": loss_figure(result)}
    if any(t.graphs for t in result.transcoders):
        out["compare_graphs"] = graph_figure(result)
    return out


def verdict(result: Comparison) -> str:
    """The transcoders ranked by the mean share of the zero-ablation gap they recover, with their worst FVU."""
    rows = sorted(result.summary_table(), key=lambda r: -r["gap recovered (mean)"])
    ranked = "; ".join(
        f"{r['transcoder']} recovers {r['gap recovered (mean)']:.1%} of the gap on average "
        f"(worst language {r['gap recovered (worst language)']:.1%}), worst FVU {r['worst FVU']:.3f}"
        for r in rows
    )
    return f"Ranked by the share of the zero-ablation gap recovered: {ranked}."


def graph_table(result: Comparison) -> list[dict]:
    """One row per transcoder and graph prompt: its replacement and completeness scores."""
    return [
        {"transcoder": t.name, "task": g.task, "item": g.item, "language": g.language}
        | {"replacement": g.replacement, "completeness": g.completeness, "active features": g.active}
        for t in result.transcoders
        for g in t.graphs
    ]


def section(result: Comparison) -> Section:
    """The page's one section: how each number is measured, the verdict, figures and tables."""
    s = result.settings
    intro = (
        f"Each transcoder is measured on the same {s.get('heldout')} held-out verses per language and "
        f"{s.get('graph_prompts')} graph prompt(s) per language. <b>FVU</b>: squared reconstruction error of a layer's "
        "MLP output over its variance, in the worst language; <b>L0</b>: active features per token, in the language "
        "with the most; <b>dead</b>: the share of features never active, in the language with the fewest. "
        "<b>Loss spliced</b>: next-token loss with every covered MLP replaced by the transcoder (computed on the "
        "spliced model's own residual stream); <b>zero-ablated</b>: with those MLP outputs zeroed; <b>gap "
        "recovered</b> = (zero - spliced) / (zero - original). <b>Graph replacement</b> and <b>completeness</b>: "
        "the attribution graph scores (share of influence not through error nodes), mean over the prompts."
    )
    return Section(
        "Transcoders compared",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.summary_table(), result.layer_table(), result.loss_table(), graph_table(result)],
    )


def write_page(result: Comparison, folder: Path) -> Path:
    """Write ``compare.html`` (self-contained: plotly.js inline) in ``folder``; return its path."""
    header = {
        "model": result.model,
        "corpus": result.corpus,
        "languages": result.languages,
        "created": result.created,
        "versions": result.versions,
        "run": result.run,
        "analyses": {
            "clt-compare": {"options": result.settings, "transcoders": {t.name: t.paths for t in result.transcoders}}
        },
    }
    path = Path(folder) / PAGE
    atomic_write_bytes(path, render(header, [section(result)]).encode("utf-8"))
    return path


__all__ = [
    "PAGE",
    "figures",
    "graph_figure",
    "graph_table",
    "loss_figure",
    "quality_figure",
    "section",
    "verdict",
    "write_page",
]
