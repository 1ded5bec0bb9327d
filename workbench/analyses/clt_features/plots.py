"""Figures of the clt-features slice. Plotting only: every function takes a result, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.analyses.clt_features.result import Result
from workbench.data.languages import language_name


def counts_figure(result: Result) -> go.Figure:
    """Per layer, features by kind: specific to each language, multilingual, other used, rare."""
    layers = [row["layer"] for row in result.layer_counts]
    fig = go.Figure()
    for lang in result.languages:
        fig.add_trace(
            go.Bar(
                x=layers,
                y=[row[f"specific {lang}"] for row in result.layer_counts],
                name=f"specific: {lang} · {language_name(lang)}",
            )
        )
    for kind, colour in (("multilingual", "#4C78A8"), ("other", "#BAB0AC")):
        fig.add_trace(go.Bar(x=layers, y=[row[kind] for row in result.layer_counts], name=kind, marker_color=colour))
    fig.update_layout(
        title=f"Features per layer by kind ({result.n_features:,} per layer; rare ones left out)",
        barmode="stack",
        xaxis_title="layer",
        yaxis_title="features",
        xaxis_dtick=1,
        height=400,
    )
    return fig


def share_figure(result: Result) -> go.Figure:
    """Per layer, used features by the share of their frequency that falls on their top language."""
    bins = [f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10)]
    fig = go.Figure(
        go.Heatmap(
            z=result.share_bins, x=bins, y=list(range(result.n_layers)), colorscale="Blues", colorbar_title="features"
        )
    )
    fig.update_layout(
        title=f"Selectivity: top language's share of a feature's frequency (uniform: {1 / len(result.languages):.2f})",
        xaxis_title="share of the top language",
        yaxis_title="layer",
        yaxis_dtick=1,
        height=380,
    )
    return fig


def cards_figure(result: Result) -> go.Figure:
    """Frequency per language of every language's identity features (rows).

    A clean diagonal block structure means each language has features of its own.
    """
    cards = [c for lang in result.languages for c in result.identity.get(lang, [])]
    z = [[c.frequency[lang] for lang in result.languages] for c in cards]
    labels = [f"{c.kind}: {c.name()}" for c in cards]
    fig = go.Figure(
        go.Heatmap(z=z, x=result.languages, y=labels, colorscale="Viridis", zmin=0, zmax=1, colorbar_title="frequency")
    )
    fig.update_layout(
        title="Identity features: frequency on each language's tokens",
        xaxis_title="language of the text",
        yaxis_autorange="reversed",
        height=max(320, 18 * len(cards) + 120),
    )
    return fig
