"""Figures of the logit-lens slice (MWork Figure 1; Wendler et al.).

Plotting only: every function takes a result, computes nothing.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.lens.layer_language import LensResult
from workbench.runs.plotting import PALETTE


def lens_share_figure(result: LensResult) -> go.Figure:
    """MWork Figure 1: per layer, the share of English and of input-language tokens in the top-k.

    Among the lens's top-k tokens, one line per input language (English input drawn dashed).
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=("English tokens among the top-k", "input-language tokens among the top-k"),
    )
    x = list(range(len(result.layer_names)))
    for i, (lang, r) in enumerate(result.languages.items()):
        style = dict(color=PALETTE[i % len(PALETTE)], dash="dash" if lang == "en" else "solid")
        for col, category in ((1, "english"), (2, "input" if lang != "en" else "english")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=r.share(category),
                    mode="lines",
                    line=style,
                    name=f"{lang} · {language_name(lang)}",
                    legendgroup=lang,
                    showlegend=col == 1,
                    hovertemplate=f"{lang}, layer %{{x}}: %{{y:.1%}} {category}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="layer (0 = embeddings)", tickvals=x, ticktext=result.layer_names)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_layout(
        title="Logit lens: language of the decoded tokens, layer by layer", template="plotly_white", height=460
    )
    return fig


def lens_mass_figure(result: LensResult, cols: int = 4) -> go.Figure:
    """Latent language: probability mass on English vs input-language tokens per layer.

    With 95% bootstrap bands over documents; one panel per input language.
    """
    langs = list(result.languages)
    rows = -(-len(langs) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=[f"{lang} · {language_name(lang)}" for lang in langs],
    )
    x = list(range(len(result.layer_names)))
    in_legend: set[str] = set()
    for i, lang in enumerate(langs):
        r = result.languages[lang]
        row, col = i // cols + 1, i % cols + 1
        series = [("P(English)", r.mass_english, r.mass_english_ci, "#4C78A8")]
        if lang != "en":
            series.append(("P(input language)", r.mass_input, r.mass_input_ci, "#E45756"))
        for name, mean, ci, color in series:
            low, high = [c[0] for c in ci], [c[1] for c in ci]
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=high + low[::-1],
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line=dict(width=0),
                    hoverinfo="skip",
                    showlegend=False,
                ),
                row=row,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=mean,
                    mode="lines",
                    line=dict(color=color),
                    name=name,
                    legendgroup=name,
                    showlegend=name not in in_legend,
                    hovertemplate=f"{lang} layer %{{x}}: {name} %{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            in_legend.add(name)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(
        title="Latent language: probability mass on English vs input-language tokens",
        template="plotly_white",
        height=260 * rows + 80,
    )
    return fig
