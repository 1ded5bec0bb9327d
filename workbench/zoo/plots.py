"""Figures, verdicts and the report of a zoo comparison ([`ZooComparison`][workbench.zoo.compare.ZooComparison]).

Plotting only: every function takes the comparison and computes nothing beyond what it draws.
The verdicts are computed from the numbers, so they read the same way whatever the models show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.ffn.metrics import spearman
from workbench.runs.plotting import PALETTE
from workbench.runs.report import Section, render
from workbench.runs.results import atomic_write_bytes, read_manifest
from workbench.zoo.compare import ModelFindings, ZooComparison

REPORT = "report.html"
"""The comparison's report, in its folder."""


def _lens_models(
    comparison: ZooComparison,
) -> list[tuple[ModelFindings, dict[str, list[float]], dict[str, list[float]]]]:
    """The models with lens findings, each with its English and input-language shares."""
    return [(m, m.lens_english, m.lens_input) for m in comparison.models if m.lens_english and m.lens_input is not None]


def _plnd_models(comparison: ZooComparison) -> list[tuple[ModelFindings, dict[str, int], int, dict[str, list[int]]]]:
    """The models with PLND findings, each with its set sizes, the neurons ranked and the sizes per layer."""
    return [
        (m, m.plnd_sizes, m.plnd_total, m.plnd_layers)
        for m in comparison.models
        if m.plnd_sizes and m.plnd_total is not None and m.plnd_layers is not None
    ]


def _depth(n: int, comparison: ZooComparison) -> list[float]:
    """X values of a model's ``n`` layers: their index, or their fraction of depth when the family's depths differ.

    So a 2-layer and an 8-layer model share one axis.
    """
    if len({m.layers for m in comparison.models}) == 1:
        return list(range(n))
    return [i / max(1, n - 1) for i in range(n)]


def _depth_title(comparison: ZooComparison, what: str = "layer") -> str:
    """The layer axis's title, as ``_depth`` counts the layers."""
    return what if len({m.layers for m in comparison.models}) == 1 else f"{what}, as a fraction of depth"


def loss_figure(comparison: ZooComparison) -> go.Figure:
    """Held-out loss of each language against its share of the training tokens, a line per language."""
    fig = go.Figure()
    for i, lang in enumerate(comparison.languages):
        points = sorted(
            (m.shares.get(lang, 0.0), m.heldout_loss[lang], m.name) for m in comparison.models if lang in m.heldout_loss
        )
        fig.add_scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            text=[p[2] for p in points],
            mode="lines+markers",
            name=f"{lang} · {language_name(lang)}",
            line=dict(color=PALETTE[i % len(PALETTE)], dash="dash" if lang == "en" else "solid"),
            hovertemplate=f"{lang} in %{{text}}: share %{{x:.0%}}, loss %{{y:.3f}}<extra></extra>",
        )
    fig.update_xaxes(title_text="the language's share of the training tokens", tickformat=".0%")
    fig.update_yaxes(title_text="held-out loss (nats / token)")
    fig.update_layout(title="Held-out loss vs share of the mixture", template="plotly_white", height=460)
    return fig


def lens_figure(comparison: ZooComparison) -> go.Figure:
    """Per model and lens layer, the share of English and of input-language tokens among the decoded top-k.

    The shares are means over the non-English inputs; English on the left, the input language on
    the right.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["English tokens", "input-language tokens"])
    for i, (m, english, inputs) in enumerate(_lens_models(comparison)):
        style = dict(color=PALETTE[i % len(PALETTE)])
        for col, values in ((1, english), (2, inputs)):
            mean = np.mean(list(values.values()), axis=0)
            fig.add_scatter(
                x=_depth(len(mean), comparison),
                y=mean,
                mode="lines+markers",
                name=m.name,
                legendgroup=m.name,
                showlegend=col == 1,
                line=style,
                row=1,
                col=col,
                hovertemplate=f"{m.name}, %{{x}}: %{{y:.1%}}<extra></extra>",
            )
    fig.update_xaxes(title_text=_depth_title(comparison, "blocks read (0: the embeddings)"))
    fig.update_yaxes(tickformat=".0%")
    fig.update_layout(
        title="Logit lens: what the non-English inputs decode to, per layer (mean over input languages)",
        template="plotly_white",
        height=440,
    )
    return fig


def plnd_figure(comparison: ZooComparison) -> go.Figure:
    """PLND across the family: specific neurons against the share of the mixture, and per layer.

    Left: neurons specific to each language (share of all neurons) against its share of the
    mixture. Right: per model, specific neurons per layer, summed over languages.
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["specific neurons vs share of the mixture", "specific neurons per layer (all languages)"],
    )
    models = _plnd_models(comparison)
    for i, lang in enumerate(comparison.languages):
        points = sorted(
            (m.shares.get(lang, 0.0), sizes[lang] / total, m.name) for m, sizes, total, _ in models if lang in sizes
        )
        fig.add_scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            text=[p[2] for p in points],
            mode="lines+markers",
            name=lang,
            legendgroup=lang,
            line=dict(color=PALETTE[i % len(PALETTE)]),
            row=1,
            col=1,
            hovertemplate=f"{lang} in %{{text}}: %{{y:.2%}} of neurons<extra></extra>",
        )
    for i, (m, _, _, per_layer) in enumerate(models):
        fig.add_scatter(
            x=_depth(m.layers, comparison),
            y=np.sum(list(per_layer.values()), axis=0),
            mode="lines+markers",
            name=m.name,
            line=dict(color=PALETTE[(i + 5) % len(PALETTE)], dash="dot"),
            row=1,
            col=2,
            hovertemplate=f"{m.name}, %{{x}}: %{{y}} neurons<extra></extra>",
        )
    fig.update_xaxes(title_text="share of the training tokens", tickformat=".0%", row=1, col=1)
    fig.update_xaxes(title_text=_depth_title(comparison), row=1, col=2)
    fig.update_yaxes(tickformat=".1%", row=1, col=1)
    fig.update_layout(title="PLND: language-specific neurons across the family", template="plotly_white", height=440)
    return fig


def similarity_figure(comparison: ZooComparison, sublayer: str = "detector") -> go.Figure:
    """CKA heatmaps: each model's layers against its own, and the deepest model's against each other model's.

    The first row has each model against itself, the second the deepest model against the others.
    """
    own = [(m, m.ffn_similarity) for m in comparison.models if m.ffn_similarity]
    across = [s for s in comparison.across if s["sublayer"] == sublayer]
    cols = max(len(own), len(across), 1)
    titles = [m.name for m, _ in own] + [""] * (cols - len(own)) + [f"{s['a']} vs {s['b']}" for s in across]
    fig = make_subplots(rows=1 + bool(across), cols=cols, subplot_titles=titles, vertical_spacing=0.16)
    panels = [(1, k, m.name, m.name, similarity[sublayer]) for k, (m, similarity) in enumerate(own)]
    panels += [(2, k, s["a"], s["b"], s["matrix"]) for k, s in enumerate(across)]
    for row, k, a, b, matrix in panels:
        fig.add_trace(
            go.Heatmap(
                z=matrix,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=(row, k) == (1, 0),
                hovertemplate=f"{a} layer %{{y}} vs {b} layer %{{x}}: CKA %{{z:.3f}}<extra></extra>",
            ),
            row=row,
            col=k + 1,
        )
        fig.update_yaxes(autorange="reversed", dtick=1, row=row, col=k + 1)
        fig.update_xaxes(dtick=1, row=row, col=k + 1)
    fig.update_layout(
        title=f"Layer similarity of the FFN {sublayer}s (linear CKA, same verses)",
        template="plotly_white",
        height=360 * (1 + bool(across)),
    )
    return fig


def cross_language_figure(comparison: ZooComparison, sublayer: str = "detector") -> go.Figure:
    """Per model and layer, how much the languages share the layer's units.

    The measure is the mean rank correlation of the units' mean activations between languages, on
    parallel verses.
    """
    fig = go.Figure()
    shared = [(m, m.ffn_cross_language) for m in comparison.models if m.ffn_cross_language]
    for i, (m, cross_language) in enumerate(shared):
        fig.add_scatter(
            x=_depth(m.layers, comparison),
            y=cross_language[sublayer],
            mode="lines+markers",
            name=m.name,
            line=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"{m.name}, %{{x}}: %{{y:.3f}}<extra></extra>",
        )
    fig.update_xaxes(title_text=_depth_title(comparison))
    fig.update_yaxes(title_text="mean cross-language Spearman (parallel verses)")
    fig.update_layout(
        title=f"FFN {sublayer}s: how much languages share units, per layer", template="plotly_white", height=420
    )
    return fig


def figures(comparison: ZooComparison) -> dict[str, go.Figure]:
    """The comparison's figures by name: loss, then those of the analyses the family was run with."""
    out = {"zoo_loss": loss_figure(comparison)}
    if any(m.lens_english for m in comparison.models):
        out["zoo_lens"] = lens_figure(comparison)
    if any(m.plnd_sizes for m in comparison.models):
        out["zoo_plnd"] = plnd_figure(comparison)
    if any(m.ffn_similarity for m in comparison.models):
        out["zoo_similarity"] = similarity_figure(comparison)
        out["zoo_ffn_cross_language"] = cross_language_figure(comparison)
    return out


# ----------------------------------------------------------------------------- verdicts


def loss_verdict(comparison: ZooComparison) -> str:
    """Per language, held-out loss at its smallest and largest share; and how share and loss rank-correlate.

    The correlation is over every (model, language) pair.
    """
    parts, pairs = [], []
    for lang in comparison.languages:
        points = sorted(
            (m.shares.get(lang, 0.0), m.heldout_loss[lang]) for m in comparison.models if lang in m.heldout_loss
        )
        pairs += points
        if points[0][0] != points[-1][0]:
            parts.append(
                f"{lang} {points[0][1]:.2f} at {points[0][0]:.0%} vs {points[-1][1]:.2f} at {points[-1][0]:.0%}"
            )
    if not parts:
        losses = {m.name: np.mean(list(m.heldout_loss.values())) for m in comparison.models}
        return (
            "Every model saw the same mixture; mean held-out loss: "
            + ", ".join(f"{name} {loss:.3f}" for name, loss in losses.items())
            + "."
        )
    rho = spearman(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    return (
        f"Held-out loss (nats/token) at a language's smallest vs largest share: {'; '.join(parts)}. "
        f"Over every model and language, share and loss rank-correlate at {rho:+.2f} (negative: more data, "
        "lower loss)."
    )


def lens_verdict(comparison: ZooComparison) -> str:
    """Each model's English peak before the last layer for non-English inputs, next to its English share."""
    parts = []
    for m, english, _ in _lens_models(comparison):
        peak = m.english_peak()
        if peak is not None:
            last = np.mean([v[-1] for v in english.values()])
            parts.append(
                f"{m.name} (English {m.shares.get('en', 0):.0%} of training): {peak[0]:.1%} after "
                f"{peak[1]} of {m.layers} blocks, {last:.1%} after the last"
            )
    if not parts:
        return ""
    return (
        "Peak share of English tokens in the decoded top-k of non-English inputs, before the last layer: "
        + "; ".join(parts)
        + ". A peak well above the last layer's is routing through English; a model that "
        "saw no English can only show it if English tokens reach its middle layers by other means."
    )


def plnd_verdict(comparison: ZooComparison) -> str:
    """Set sizes per model and the rank correlation of a language's share and its set's size."""
    models = _plnd_models(comparison)
    if not models:
        return ""
    pairs = [(m.shares.get(lang, 0.0), sizes[lang] / total) for m, sizes, total, _ in models for lang in sizes]
    listing = "; ".join(f"{m.name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) for m, sizes, _, _ in models)
    text = f"Language-specific neurons per model and language: {listing}."
    if len({p[0] for p in pairs}) > 1:
        rho = spearman(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        text += f" A language's share and its set's size rank-correlate at {rho:+.2f}."
    depths = [d for m, sizes, _, _ in models for lang in sizes if (d := m.plnd_depth(lang)) is not None]
    if depths:
        text += f" The sets' mean layer lies at {np.mean(depths):.0%} of depth (0% first layer, 100% last)."
    return text


def ffn_verdict(comparison: ZooComparison) -> str:
    """Adjacent-layer CKA per model next to its held-out loss.

    Over-layerization is deeper models whose layers repeat each other without a lower loss.
    """
    models = [m for m in comparison.models if m.ffn_similarity]
    if not models:
        return ""
    parts = [
        f"{m.name} ({m.layers} layers): adjacent-layer CKA {m.adjacent_similarity('detector'):.2f} "
        f"(detectors), {m.adjacent_similarity('combinator'):.2f} (combinators), mean held-out loss "
        f"{np.mean(list(m.heldout_loss.values())):.3f}"
        for m in models
        if m.layers > 1
    ]
    return (
        "; ".join(parts) + ". Over-layerization (2404.13855) would show as a deeper model whose consecutive "
        "layers are near copies (CKA near 1) and whose loss is no better than a shallower sibling's."
    )


def sections(comparison: ZooComparison) -> list[Section]:
    """The report's sections: loss, then whichever of lens, PLND and FFN the family was run with."""
    figs = figures(comparison)
    names = ", ".join(m.name for m in comparison.models)
    out = [
        Section(
            f"The zoo ({comparison.family}): held-out loss vs mixture",
            f"Zoo models {names}, trained here from scratch (see <code>workbench zoo list</code>). Held-out loss is "
            "the mean next-token loss on held-out verses of each language's default translation, verses no model "
            "trained on in any translation.",
            loss_verdict(comparison),
            [figs["zoo_loss"]],
            [comparison.table()],
        )
    ]
    if "zoo_lens" in figs:
        out.append(
            Section(
                "The zoo: logit lens across the family",
                "The lens slice on each model (each model's own "
                "report has the details); curves are means over the non-English input languages.",
                lens_verdict(comparison),
                [figs["zoo_lens"]],
            )
        )
    if "zoo_plnd" in figs:
        out.append(
            Section(
                "The zoo: language-specific neurons across the family",
                "The PLND slice on each model, "
                "with the same selection rule (a fraction of each layer, so sizes compare across widths).",
                plnd_verdict(comparison),
                [figs["zoo_plnd"]],
            )
        )
    if "zoo_similarity" in figs:
        out.append(
            Section(
                "The zoo: FFN layers across the family (2404.13855)",
                "Linear CKA of one vector per verse "
                "(a layer's mean over positions) between the layers of each model, and between the deepest "
                "model's layers and each other model's, on the same parallel verses.",
                ffn_verdict(comparison),
                [figs["zoo_similarity"], figs["zoo_ffn_cross_language"]],
            )
        )
    return out


def write_zoo_report(out: Path, comparison: ZooComparison) -> Path:
    """``OUT/report.html``: the comparison's sections, headed by the family's models and settings."""
    first = read_manifest(Path(out) / comparison.models[0].name)
    names = ", ".join(f"zoo:{m.name}" for m in comparison.models)
    manifest = {
        **first,
        "model": {
            "name": f"zoo {comparison.family}",
            "spec": names,
            "route": "zoo",
            "weights": "trained here (workbench zoo train)",
        },
    }
    path = Path(out) / REPORT
    atomic_write_bytes(path, render(manifest, sections(comparison)).encode("utf-8"))
    return path
