"""Figures of the PLND slice (MWork Figure 3, Appendix C).

Plotting only: every function takes a result, computes nothing.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.neurons.plnd_sets import PLNDResult
from workbench.runs.plotting import PALETTE


def plnd_layer_figure(result: PLNDResult) -> go.Figure:
    """MWork Figure 3: language-specific neurons per layer, attention vs FFN.

    Attention's Q, K, V and O together, one line per language; below, the same without the
    neurons every language shares.
    """
    exclusive = not result.selection.exclusive and len(result.languages) > 1
    titles = ["attention neurons (Q, K, V, O)", "FFN neurons"]
    if exclusive:
        titles += ["attention, not shared by all languages", "FFN, not shared by all languages"]
    fig = make_subplots(rows=1 + exclusive, cols=2, subplot_titles=titles, vertical_spacing=0.14)
    x = list(range(1, result.n_layers + 1))
    for i, lang in enumerate(result.languages):
        style = dict(color=PALETTE[i % len(PALETTE)], dash="dash" if lang == "en" else "solid")
        for row, which in enumerate(["plnd", "exclusive"][: 1 + exclusive], start=1):
            counts = result.per_layer(lang, which)
            attention = [sum(counts[s][layer] for s in counts if s != "ffn") for layer in range(result.n_layers)]
            ffn = counts.get("ffn", [0] * result.n_layers)
            for col, values, kind in ((1, attention, "attention"), (2, ffn, "FFN")):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=values,
                        mode="lines+markers",
                        line=style,
                        marker=dict(size=4),
                        name=f"{lang} · {language_name(lang)}",
                        legendgroup=lang,
                        showlegend=(row, col) == (1, 1),
                        hovertemplate=f"{lang}, layer %{{x}}: %{{y}} {kind} neurons<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
    fig.update_xaxes(title_text="layer", tickvals=x)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="neurons", col=1)
    fig.update_layout(
        title="PLND: language-specific neurons per layer", template="plotly_white", height=460 + 360 * exclusive
    )
    return fig


def overlap_figure(result: PLNDResult) -> go.Figure:
    """Appendix C: Jaccard overlap between languages' neuron sets.

    PLND's, PLND's without the neurons all languages share, and LAPE's.
    """
    panels = [("PLND", "plnd")]
    if not result.selection.exclusive:
        panels.append(("PLND, not shared by all", "exclusive"))
    if result.lape:
        panels.append(("LAPE (FFN)", "lape"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    for col, (name, which) in enumerate(panels, start=1):
        langs = list(result.named_sets(which))
        matrix = result.overlap(which)
        fig.add_trace(
            go.Heatmap(
                z=matrix,
                x=langs,
                y=langs,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 1,
                text=[[f"{v:.2f}" for v in row] for row in matrix],
                texttemplate="%{text}",
                hovertemplate=f"{name}: %{{y}} vs %{{x}}: Jaccard %{{z:.3f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(
        title="Overlap between languages' specific neurons (Jaccard index)",
        template="plotly_white",
        height=440,
        width=None,
    )
    return fig
