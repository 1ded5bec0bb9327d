"""Figures of the clt-study slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.clt_study.result import Result


def study_figure(result: Result) -> go.Figure:
    """The study's numbers in six panels.

    Over the covered layers: feature kinds, reconstruction, graph overlap; steering per language
    pair against the control; and, where the run has them, the language probe per residual point
    and the fine-tuned language's own features per layer.
    """
    fig = make_subplots(
        rows=2,
        cols=3,
        horizontal_spacing=0.07,
        vertical_spacing=0.2,
        subplot_titles=(
            "features per layer",
            "reconstruction (worst language)",
            "language probe (held-out)",
            "graph overlap (Jaccard)",
            "steering: target share",
            "fine-tuned: own features",
        ),
    )
    layers = result.layers
    fig.add_trace(go.Scatter(x=layers, y=result.multilingual, name="multilingual", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=layers, y=result.specific, name="language-specific", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=layers, y=result.fvu, name="FVU", mode="lines+markers"), 1, 2)
    fig.add_trace(go.Scatter(x=layers, y=[v / 100 for v in result.l0], name="L0 / 100", mode="lines+markers"), 1, 2)
    fig.add_trace(go.Scatter(x=layers, y=result.jaccard, name="Jaccard", mode="lines+markers"), 2, 1)
    pairs = [f"{r['source']}->{r['target']}" for r in result.steering]
    fig.add_trace(go.Bar(x=pairs, y=[r["identity"] for r in result.steering], name="identity features"), 2, 2)
    fig.add_trace(go.Bar(x=pairs, y=[r["control"] for r in result.steering], name="matched control"), 2, 2)
    if result.probe:
        _probe_panel(fig, result.probe)
    if result.diff:
        _diff_panel(fig, result.diff)
    for row, col in ((1, 1), (1, 2), (2, 1), (2, 3)):
        fig.update_xaxes(title_text="layer", row=row, col=col)
    fig.update_xaxes(title_text="residual point", row=1, col=3)
    fig.update_layout(
        title=f"The paper's findings on {result.model}",
        template="plotly_white",
        height=720,
        width=1500,
        barmode="group",
    )
    return fig


def _probe_panel(fig: go.Figure, probe: dict) -> None:
    """The language probe per residual point (row 1, column 3)."""
    fig.add_trace(
        go.Scatter(x=probe["points"], y=probe["shared"], name="probe, shared tokens", mode="lines+markers"), 1, 3
    )
    fig.add_trace(
        go.Scatter(x=probe["points"], y=probe["accuracy"], name="probe, all tokens", mode="lines+markers"), 1, 3
    )
    fig.add_trace(
        go.Scatter(
            x=probe["points"],
            y=[probe["baselines"]["token_shared"]] * len(probe["points"]),
            name="token id alone, shared",
            mode="lines",
            line={"dash": "dot", "color": "grey"},
        ),
        1,
        3,
    )


def _diff_panel(fig: go.Figure, diff: dict) -> None:
    """The fine-tuned language's own features per layer against the others' (row 2, column 3)."""
    fig.add_trace(
        go.Scatter(
            x=diff["layers"],
            y=diff["own"],
            name=f"{diff['target']} features on {diff['target']}",
            mode="lines+markers",
        ),
        2,
        3,
    )
    fig.add_trace(
        go.Scatter(x=diff["layers"], y=diff["others"], name="other languages' own features", mode="lines+markers"),
        2,
        3,
    )
