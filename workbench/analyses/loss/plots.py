"""Figures of the loss slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.interventions.perplexity import LossResult


def loss_figure(result: LossResult, title: str = "Held-out loss per language") -> go.Figure:
    """Two panels per language: mean loss (nats/token, 95% bootstrap interval) and bits per byte.

    Loss per token depends on how finely the tokenizer cuts each script; bits per UTF-8 byte of
    the same (parallel) text does not, so the right panel is the fairer cross-language comparison.
    """
    rows = result.table()
    labels = [f"{r['language']} · {language_name(r['language'])}" for r in rows]
    hover = [[r["perplexity"], r["documents"], r["tokens"], r["source"]] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss per token (nats)", "loss per UTF-8 byte (bits)"))
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[r["loss"] for r in rows],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[r["loss_ci95"][1] - r["loss"] for r in rows],
                arrayminus=[r["loss"] - r["loss_ci95"][0] for r in rows],
            ),
            customdata=hover,
            hovertemplate=(
                "%{x}<br>loss %{y:.3f} nats/token<br>perplexity %{customdata[0]:.1f}"
                "<br>%{customdata[1]} documents, %{customdata[2]} tokens"
                "<br>%{customdata[3]}<extra></extra>"
            ),
            marker_color="#4C78A8",
            name="nats / token",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[r["bits_per_byte"] for r in rows],
            hovertemplate="%{x}<br>%{y:.3f} bits/byte<extra></extra>",
            marker_color="#F58518",
            name="bits / byte",
        ),
        row=1,
        col=2,
    )
    fig.update_layout(title=title, template="plotly_white", height=440, showlegend=False, margin=dict(t=80, b=60))
    return fig
