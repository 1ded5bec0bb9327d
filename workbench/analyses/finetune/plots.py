"""Figures of the fine-tuning slice (MWork Figure 4). Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.interventions.enhancement import EnhancementResult

_GAIN_UNITS = {"loss": "loss decrease (nats/token)", "accuracy": "accuracy gain", "fidelity": "fidelity gain"}


def enhancement_figure(result: EnhancementResult, measure: str = "loss") -> go.Figure:
    """MWork Figure 4 form: per target, the gain against training documents.

    For the target, English and the other languages (mean), with the random-neuron control as
    separate markers.
    """
    targets = result.targets
    fig = make_subplots(
        rows=1,
        cols=len(targets),
        shared_yaxes=True,
        subplot_titles=[f"trained: {t} · {language_name(t)}" for t in targets],
    )
    table = result.table(measure)
    lines = (
        ("target gain", "target", "#E45756"),
        ("English gain", "English", "#4C78A8"),
        ("other languages: mean gain", "other languages (mean)", "#72B7B2"),
    )
    for col, target in enumerate(targets, start=1):
        for kind, dash, symbol in (("language", "solid", "circle"), ("random", "dot", "x")):
            rows = [r for r in table if r["target"] == target and r["neurons"] == kind]
            for key, name, color in lines:
                if not rows or all(r[key] is None for r in rows):
                    continue
                label = f"{name}, {'its neurons' if kind == 'language' else 'random neurons'}"
                fig.add_scatter(
                    x=[r["documents"] for r in rows],
                    y=[r[key] for r in rows],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line=dict(color=color, dash=dash),
                    marker=dict(symbol=symbol, size=9),
                    row=1,
                    col=col,
                    hovertemplate=f"{target}, {label}: %{{x}} documents, gain %{{y:.3f}}<extra></extra>",
                )
        zero = dict(color="#999", width=1)
        fig.add_hline(y=0, line=zero, row=1, col=col)  # pyright: ignore[reportArgumentType]  # plotly takes int row/col
    fig.update_xaxes(title_text="training documents", type="log")
    fig.update_yaxes(title_text=_GAIN_UNITS.get(measure, measure), col=1)
    fig.update_layout(
        title=f"Training only a language's neurons: {_GAIN_UNITS.get(measure, measure)} (positive = better)",
        template="plotly_white",
        height=460,
    )
    return fig


def enhancement_matrix_figure(result: EnhancementResult, measure: str = "loss") -> go.Figure:
    """Rows: training runs (target · neurons · documents); columns: languages measured; cells: gain."""
    matrix = result.gain_matrix(measure)
    labels = [f"{r.target} · {'its neurons' if r.kind == 'language' else 'random'} · {r.size}" for r in result.runs]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=result.languages,
            y=labels,
            colorscale="RdBu",
            zmid=0,
            text=[[f"{v:.2f}" for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x} measured: gain %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="training run")
    fig.update_xaxes(title_text="language measured")
    fig.update_layout(
        title=f"Every language after each run ({_GAIN_UNITS.get(measure, measure)}; blue = better)",
        template="plotly_white",
        height=140 + 32 * len(labels),
    )
    return fig


def training_curve_figure(result: EnhancementResult, window: int = 5) -> go.Figure:
    """Training loss per step of every run (moving average over ``window`` steps)."""
    fig = go.Figure()
    for run in result.runs:
        losses = run.losses
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        fig.add_scatter(
            x=list(range(1, len(losses) + 1)),
            y=smooth,
            mode="lines",
            name=f"{run.target} · {'its neurons' if run.kind == 'language' else 'random'} · {run.size}",
            line=dict(dash="solid" if run.kind == "language" else "dot"),
        )
    fig.update_layout(
        title=f"Training loss (nats/token, moving average of {window} steps)",
        template="plotly_white",
        height=420,
        xaxis_title="step",
        yaxis_title="loss",
    )
    return fig


_FFN_MEASURES = {
    "sparsity": "sparsity (share of near-zero values)",
    "frequency": "mean activation frequency",
    "rare": "share of units active < 1%",
    "flatness": "flatness (entropy / log units)",
}
