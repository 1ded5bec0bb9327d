"""Figures of the FFN detector/combinator slice (arXiv 2404.13855).

Plotting only: every function takes a result, computes nothing.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.ffn.result import FFNResult
from workbench.runs.plotting import PALETTE

_FFN_MEASURES = {
    "sparsity": "sparsity (share of near-zero values)",
    "frequency": "mean activation frequency",
    "rare": "share of units active < 1%",
    "flatness": "flatness (entropy / log units)",
}


def ffn_layer_figure(result: FFNResult, sublayer: str = "detector") -> go.Figure:
    """Per-layer curves per language: sparsity, activation frequency, rarely active units, flatness."""
    names = list(_FFN_MEASURES)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[_FFN_MEASURES[m] for m in names], vertical_spacing=0.14)
    layers = list(range(result.n_layers))
    for k, measure in enumerate(names):
        row, col = divmod(k, 2)
        for i, lang in enumerate(result.languages):
            fig.add_scatter(
                x=layers,
                y=result.metrics[sublayer][measure][lang],
                mode="lines+markers",
                name=lang,
                legendgroup=lang,
                showlegend=k == 0,
                marker=dict(size=4),
                line=dict(color=PALETTE[i % len(PALETTE)]),
                row=row + 1,
                col=col + 1,
                hovertemplate=f"{lang}, layer %{{x}}: %{{y:.3f}}<extra></extra>",
            )
    fig.update_xaxes(title_text="layer")
    fig.update_layout(title=f"FFN {sublayer}s per layer and language", template="plotly_white", height=620)
    return fig


def ffn_correlation_figure(result: FFNResult, sublayer: str = "detector") -> go.Figure:
    """Per layer, the mean Spearman correlation of the units' mean activations between languages.

    On parallel verses, on unrelated verses, their difference, and a language against itself on
    other verses.
    """
    cross = result.cross_language(sublayer)
    layers = list(range(result.n_layers))
    styles = {
        "parallel": ("#E45756", "solid"),
        "unrelated": ("#4C78A8", "solid"),
        "same language": ("#54A24B", "dot"),
        "difference": ("#333333", "dash"),
    }
    labels = {
        "parallel": "other language, same verses",
        "unrelated": "other language, other verses",
        "same language": "same language, other verses",
        "difference": "parallel - unrelated",
    }
    fig = go.Figure()
    for key, (color, dash) in styles.items():
        fig.add_scatter(
            x=layers,
            y=cross[key],
            mode="lines+markers",
            name=labels[key],
            line=dict(color=color, dash=dash),
            hovertemplate=f"{labels[key]}, layer %{{x}}: rho %{{y:.3f}}<extra></extra>",
        )
    fig.update_layout(
        title=f"Rank correlation of FFN {sublayer} usage between languages (Spearman, mean over pairs)",
        template="plotly_white",
        height=420,
        xaxis_title="layer",
        yaxis_title="Spearman rho",
    )
    return fig


def ffn_heatmap_figure(result: FFNResult, sublayer: str = "detector", layers: list[int] | None = None) -> go.Figure:
    """Language-by-language Spearman matrices at a few layers: parallel verses (top), unrelated (bottom)."""
    n = result.n_layers
    layers = layers if layers is not None else sorted({0, n // 2, n - 1})
    fig = make_subplots(
        rows=2,
        cols=len(layers),
        horizontal_spacing=0.06,
        vertical_spacing=0.12,
        subplot_titles=[f"{kind}, layer {layer}" for kind in ("parallel", "unrelated") for layer in layers],
    )
    for row, kind in enumerate(("parallel", "unrelated"), start=1):
        matrices = result.correlation(sublayer, kind)
        for col, layer in enumerate(layers, start=1):
            m = matrices[layer]
            fig.add_trace(
                go.Heatmap(
                    z=m,
                    x=result.languages,
                    y=result.languages,
                    zmin=-1,
                    zmax=1,
                    colorscale="RdBu",
                    reversescale=True,
                    showscale=row == 1 and col == 1,
                    text=[[f"{v:.2f}" for v in r] for r in m],
                    texttemplate="%{text}",
                    hovertemplate=f"{kind}, layer {layer}: %{{y}} vs %{{x}}: rho %{{z:.3f}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            fig.update_yaxes(autorange="reversed", row=row, col=col)
    fig.update_layout(
        title=f"Spearman correlation of FFN {sublayer} usage between languages", template="plotly_white", height=760
    )
    return fig


def similarity_figure(result: FFNResult, measure: str = "cka") -> go.Figure:
    """Layer-by-layer similarity heatmaps: for each compared pair of models, detectors and combinators."""
    entries = [s for s in result.similarity if s["measure"] == measure]
    titles = [f"{s['sublayer']}s: {s['a']} vs {s['b']}" for s in entries]
    fig = make_subplots(
        rows=max(1, len(entries) // 2), cols=2, subplot_titles=titles, vertical_spacing=0.12, horizontal_spacing=0.1
    )
    for k, s in enumerate(entries):
        row, col = divmod(k, 2)
        m = s["matrix"]
        fig.add_trace(
            go.Heatmap(
                z=m,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=k == 0,
                hovertemplate=f"{s['a']} layer %{{y}} vs {s['b']} layer %{{x}}: {measure} %{{z:.3f}}<extra></extra>",
            ),
            row=row + 1,
            col=col + 1,
        )
        fig.update_yaxes(autorange="reversed", title_text=f"{s['a']} layer", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text=f"{s['b']} layer", row=row + 1, col=col + 1)
    label = {"cka": "linear CKA", "rsa": "correlation of correlations"}.get(measure, measure)
    fig.update_layout(
        title=f"Layer-by-layer similarity ({label}) on the same verses",
        template="plotly_white",
        height=80 + 440 * max(1, len(entries) // 2),
    )
    return fig
