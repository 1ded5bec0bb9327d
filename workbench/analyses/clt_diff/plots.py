"""Figures of the clt-diff slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.clt_diff.result import Result
from workbench.data.languages import language_name


def layers_figure(result: Result) -> go.Figure:
    """Per layer: the mean |frequency change| over features and languages, and how many features moved."""
    layers = [row["layer"] for row in result.layers]
    moved_key = next(k for k in result.layers[0] if k.startswith("features |d frequency|"))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=layers, y=[row["mean |d frequency|"] for row in result.layers], name="mean |d frequency|"))
    fig.add_trace(
        go.Scatter(x=layers, y=[row[moved_key] for row in result.layers], name=moved_key, mode="lines+markers"),
        secondary_y=True,
    )
    fig.update_layout(
        title="Where fine-tuning moved the base transcoder's features", xaxis_title="layer", xaxis_dtick=1, height=380
    )
    fig.update_yaxes(title_text="mean |d frequency|", secondary_y=False)
    fig.update_yaxes(title_text="features", secondary_y=True)
    return fig


def fvu_figure(result: Result) -> go.Figure:
    """Per language and layer, the reconstruction error before (dashed) and after (solid) fine-tuning."""
    fig = go.Figure()
    layers = list(range(result.n_layers))
    for lang in result.languages:
        name = f"{lang} · {language_name(lang)}"
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=[p[0] for p in result.fvu[lang]],
                name=f"{name}, base",
                line={"dash": "dash"},
                legendgroup=lang,
            )
        )
        fig.add_trace(
            go.Scatter(x=layers, y=[p[1] for p in result.fvu[lang]], name=f"{name}, fine-tuned", legendgroup=lang)
        )
    fig.update_layout(
        title="Reconstruction error (FVU) of the base transcoder, base vs fine-tuned",
        xaxis_title="layer",
        yaxis_title="FVU",
        xaxis_dtick=1,
        height=400,
    )
    return fig


def identity_figure(result: Result) -> go.Figure:
    """Each language's identity features: identity score in the base (x) and fine-tuned (y) model."""
    fig = go.Figure()
    for lang in result.languages:
        rows = [r for r in result.identity if r["language"] == lang]
        fig.add_trace(
            go.Scatter(
                x=[r["score base"] for r in rows],
                y=[r["score fine-tuned"] for r in rows],
                mode="markers",
                name=f"{lang} · {language_name(lang)}",
                text=[r["feature"] for r in rows],
            )
        )
    fig.add_trace(
        go.Scatter(x=[-1, 1], y=[-1, 1], mode="lines", line={"color": "#999", "dash": "dot"}, name="unchanged")
    )
    fig.update_layout(
        title="Identity features' strength: base vs fine-tuned (below the diagonal: weakened)",
        xaxis_title="identity score, base",
        yaxis_title="identity score, fine-tuned",
        height=420,
    )
    return fig


def strength_figure(result: Result) -> go.Figure:
    """Per layer, the change of each language's specific features' frequency on its own tokens.

    The fine-tuned language is drawn thick.
    """
    fig = go.Figure()
    for lang in result.languages:
        change = result.strength_change(lang)
        fig.add_trace(
            go.Scatter(
                x=list(change),
                y=list(change.values()),
                mode="lines+markers",
                name=f"{lang} · {language_name(lang)}" + (" (fine-tuned)" if lang == result.target else ""),
                line={"width": 4 if lang == result.target else 1.5},
            )
        )
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"})
    fig.update_layout(
        title="Each language's specific features on its own tokens: frequency change after fine-tuning",
        xaxis_title="layer",
        yaxis_title="d frequency (fine-tuned - base)",
        xaxis_dtick=1,
        height=400,
    )
    return fig
