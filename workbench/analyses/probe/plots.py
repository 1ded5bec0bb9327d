"""Figures of the probe slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.probe.result import Result


def accuracy_figure(result: Result) -> go.Figure:
    """Held-out accuracy per residual point (all tokens, shared tokens) against the baselines, and per language."""
    points = [s.point for s in result.scores]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("held-out accuracy", "per language"))
    fig.add_trace(
        go.Scatter(x=points, y=[s.accuracy for s in result.scores], name="probe, all tokens", mode="lines+markers"),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(x=points, y=[s.shared for s in result.scores], name="probe, shared tokens", mode="lines+markers"),
        1,
        1,
    )
    for key, name, dash in (
        ("token", "token id alone, all", "dash"),
        ("token_shared", "token id alone, shared", "dot"),
        ("majority", "majority language", "dashdot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=points,
                y=[result.baselines[key]] * len(points),
                name=name,
                mode="lines",
                line={"dash": dash, "color": "grey"},
            ),
            1,
            1,
        )
    for i, lang in enumerate(result.languages):
        fig.add_trace(
            go.Scatter(
                x=points, y=[s.per_language[i] for s in result.scores], name=lang, mode="lines", legendgroup="languages"
            ),
            1,
            2,
        )
    for col in (1, 2):
        fig.update_xaxes(title_text="residual point (0: embedding; l: input of block l)", row=1, col=col)
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
    fig.update_layout(
        title="Is the language linearly readable from the residual stream?", template="plotly_white", height=420
    )
    return fig
