"""Figures of the clt-steer slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.clt_steer.result import Result


def strength_figure(result: Result) -> go.Figure:
    """Target language's share of continuation tokens and mass against strength, averaged over pairs.

    Identity features against the matched control.
    """
    strengths = sorted({r.strength for r in result.rows})
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("target's share of labelled continuation tokens", "probability mass on target tokens"),
    )
    for kind, dash in (("identity", "solid"), ("control", "dot")):
        for col, key in ((1, "share_target"), (2, "mass_target")):
            mean = [result.mean(key, kind, s) for s in strengths]
            fig.add_trace(
                go.Scatter(
                    x=strengths,
                    y=mean,
                    mode="lines+markers",
                    name=f"{kind} features",
                    line_dash=dash,
                    legendgroup=kind,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="strength s")
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(title="Steering towards the target language, mean over language pairs", height=380)
    return fig


def pairs_figure(result: Result) -> go.Figure:
    """Per (source, target), the target's share at the best strength: identity and control."""
    best = result.best()
    sources = list(dict.fromkeys(b["source"] for b in best))
    targets = list(dict.fromkeys(b["target"] for b in best))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("identity features", "matched random control"))
    for col, key in ((1, "identity"), (2, "control")):
        z = [
            [next((b[key] for b in best if b["source"] == s and b["target"] == t), None) for t in targets]
            for s in sources
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=targets,
                y=sources,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 2,
                colorbar_title="share",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="target language")
    fig.update_yaxes(title_text="prompt language", col=1)
    fig.update_layout(title="Target language's share of the continuation at the best strength", height=380)
    return fig
