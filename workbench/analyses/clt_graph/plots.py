"""Figures of the clt-graph slice. Plotting only: every function takes a result, computes nothing.

A stored view's figure is [`view_figure`][workbench.clt.graphs.stored_views.view_figure].
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_graph.result import Result
from workbench.data.languages import language_name


def jaccard_figure(result: Result) -> go.Figure:
    """Per layer, the overlap of kept features across languages, per task and over all tasks."""
    fig = go.Figure()
    layers = list(range(result.n_layers))
    for task, values in result.jaccard.items():
        bold = task == "all"
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=values,
                mode="lines+markers",
                name="all tasks" if bold else task,
                line={"width": 4 if bold else 1.5, "dash": "solid" if bold else "dot"},
            )
        )
    fig.update_layout(
        title="Overlap of graph features across languages (Jaccard, mean over language pairs)",
        xaxis_title="layer",
        yaxis_title="Jaccard",
        xaxis_dtick=1,
        height=400,
    )
    return fig


def kept_figure(result: Result) -> go.Figure:
    """Per layer, the kept feature nodes per graph, averaged per language."""
    fig = go.Figure()
    for lang in result.languages:
        rows = [r for r in result.rows if r.language == lang]
        means = [float(np.mean([len(r.kept[layer]) for r in rows])) for layer in range(result.n_layers)]
        fig.add_trace(go.Bar(x=list(range(result.n_layers)), y=means, name=f"{lang} · {language_name(lang)}"))
    fig.update_layout(
        title="Feature nodes kept by pruning, per layer (mean per graph)",
        barmode="group",
        xaxis_title="layer",
        yaxis_title="features",
        xaxis_dtick=1,
        height=380,
    )
    return fig
