"""Figures of the clt-study slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def study_figure(result) -> go.Figure:
    """Four panels over the covered layers: feature kinds, reconstruction, graph overlap; and
    steering per language pair against the control."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "features per layer", "reconstruction (worst language)", "graph overlap across languages (Jaccard)",
        "steering: target share, identity vs control"))  # fmt: skip
    layers = result.layers
    fig.add_trace(go.Scatter(x=layers, y=result.multilingual, name="multilingual", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=layers, y=result.specific, name="language-specific", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=layers, y=result.fvu, name="FVU", mode="lines+markers"), 1, 2)
    fig.add_trace(go.Scatter(x=layers, y=[v / 100 for v in result.l0], name="L0 / 100", mode="lines+markers"), 1, 2)
    fig.add_trace(go.Scatter(x=layers, y=result.jaccard, name="Jaccard", mode="lines+markers"), 2, 1)
    pairs = [f"{r['source']}->{r['target']}" for r in result.steering]
    fig.add_trace(go.Bar(x=pairs, y=[r["identity"] for r in result.steering], name="identity features"), 2, 2)
    fig.add_trace(go.Bar(x=pairs, y=[r["control"] for r in result.steering], name="matched control"), 2, 2)
    for col in (1, 2):
        fig.update_xaxes(title_text="layer", row=1, col=col)
    fig.update_xaxes(title_text="layer", row=2, col=1)
    fig.update_layout(title=f"The paper's findings on {result.model}", template="plotly_white", height=720,
                      barmode="group")  # fmt: skip
    return fig
