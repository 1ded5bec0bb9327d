"""Figures of the clt-train slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.clt_train.result import Result
from workbench.data.languages import language_name


def quality_figure(result: Result) -> go.Figure:
    """FVU, L0 and dead share per layer, one line per language."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("FVU (lower is better)", "L0 (active features per token)", "dead features (share)"),
    )
    for lang, rows in result.quality.items():
        layers = [q.layer for q in rows]
        name = f"{lang} · {language_name(lang)}"
        for col, values in enumerate(([q.fvu for q in rows], [q.l0 for q in rows], [q.dead for q in rows]), start=1):
            fig.add_trace(
                go.Scatter(x=layers, y=values, mode="lines+markers", name=name, legendgroup=lang, showlegend=col == 1),
                row=1,
                col=col,
            )
    goal = {"line_dash": "dot", "line_color": "grey"}
    fig.add_hline(y=0.2, row=1, col=1, **goal)  # pyright: ignore[reportArgumentType]  # plotly takes int row/col
    fig.add_hline(y=64, row=1, col=2, **goal)  # pyright: ignore[reportArgumentType]  # plotly takes int row/col
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_layout(title="Transcoder quality per layer on held-out verses (dotted: the goal)", height=380)
    return fig


def loss_figure(result: Result) -> go.Figure:
    """Next-token loss of the original and the replacement model per language."""
    langs = list(result.loss)
    labels = [f"{lang} · {language_name(lang)}" for lang in langs]
    fig = go.Figure(
        [
            go.Bar(x=labels, y=[result.loss[lang].original for lang in langs], name="original model"),
            go.Bar(
                x=labels,
                y=[result.loss[lang].replacement for lang in langs],
                name="every MLP replaced by the transcoder",
            ),
        ]
    )
    fig.update_layout(
        title="Next-token loss on held-out verses (nats per token)",
        barmode="group",
        height=360,
        yaxis_title="nats per token",
    )
    return fig


def training_figure(result: Result) -> go.Figure:
    """The training curve: reconstruction error and L0 (all layers) over the steps.

    Raises:
        ValueError: The transcoder was loaded, not trained: there is no curve.
    """
    training = result.training
    if training is None:
        raise ValueError("The transcoder was loaded, not trained: it has no training curve.")
    log = training.log
    return _curves(
        [entry["step"] for entry in log],
        ("squared error (scaled units, summed over layers)", [entry["mse"] for entry in log]),
        ("L0 (all layers)", [entry["l0"] for entry in log]),
        f"Training ({training.rows:,} rows, {training.seconds / 60:.1f} min)",
        log_left=True,
    )


def splice_figure(result: Result) -> go.Figure:
    """The spliced fine-tune's curve: the KL from the model and the layers' mean reconstruction error per step.

    Raises:
        ValueError: The run made no spliced fine-tune.
    """
    splice = result.splice
    if splice is None:
        raise ValueError("The run made no spliced fine-tune (--clt-train-splice-steps).")
    return _curves(
        [entry["step"] + 1 for entry in splice.log],
        ("KL from the model (nats per token)", [entry["kl"] for entry in splice.log]),
        ("mean normalised error of the layers", [entry["fvu"] for entry in splice.log]),
        f"Spliced fine-tune ({splice.steps} steps, {splice.seconds / 60:.1f} min, training batches)",
    )


def _curves(
    steps: list[int],
    left: tuple[str, list[float]],
    right: tuple[str, list[float]],
    title: str,
    log_left: bool = False,
) -> go.Figure:
    """Two curves over the steps side by side, each ``(panel title, values)``."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(left[0], right[0]))
    for col, (name, values) in enumerate((left, right), start=1):
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=name), row=1, col=col)
    if log_left:
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=340, showlegend=False)
    return fig
