"""Plotly figures of results. Plotting only: every function takes a result object, computes nothing."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.deactivation import DeactivationResult
from workbench.enhancement import EnhancementResult
from workbench.ffn import FFNResult
from workbench.languages import language_name
from workbench.layer_language import LensResult
from workbench.perplexity import LossResult
from workbench.plnd import PLNDResult


def loss_figure(result: LossResult, title: str = "Held-out loss per language") -> go.Figure:
    """Two panels per language: mean loss (nats/token, 95% bootstrap interval) and bits per byte.

    Loss per token depends on how finely the tokenizer cuts each script; bits per UTF-8 byte of
    the same (parallel) text does not, so the right panel is the fairer cross-language comparison.
    """
    rows = result.table()
    labels = [f"{r['language']} · {language_name(r['language'])}" for r in rows]
    hover = [[r["perplexity"], r["documents"], r["tokens"], r["source"]] for r in rows]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("loss per token (nats)", "loss per UTF-8 byte (bits)")
    )
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


_PALETTE = [
    "#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2",
    "#FF9DA6", "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD",
]  # fmt: skip


def lens_share_figure(result: LensResult) -> go.Figure:
    """MWork Figure 1: per layer, the share of English and of input-language tokens among the
    lens's top-k tokens, one line per input language (English input drawn dashed)."""
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True,
        subplot_titles=("English tokens among the top-k", "input-language tokens among the top-k"),
    )  # fmt: skip
    x = list(range(len(result.layer_names)))
    for i, (lang, r) in enumerate(result.languages.items()):
        style = dict(color=_PALETTE[i % len(_PALETTE)], dash="dash" if lang == "en" else "solid")
        for col, category in ((1, "english"), (2, "input" if lang != "en" else "english")):
            fig.add_trace(
                go.Scatter(
                    x=x, y=r.share(category), mode="lines", line=style, name=f"{lang} · {language_name(lang)}",
                    legendgroup=lang, showlegend=col == 1,
                    hovertemplate=f"{lang}, layer %{{x}}: %{{y:.1%}} {category}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_xaxes(title_text="layer (0 = embeddings)", tickvals=x, ticktext=result.layer_names)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_layout(title="Logit lens: language of the decoded tokens, layer by layer",
                      template="plotly_white", height=460)  # fmt: skip
    return fig


def lens_mass_figure(result: LensResult, cols: int = 4) -> go.Figure:
    """Latent language: probability mass on English vs input-language tokens per layer, with 95%
    bootstrap bands over documents; one panel per input language."""
    langs = list(result.languages)
    rows = -(-len(langs) // cols)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"{lang} · {language_name(lang)}" for lang in langs])  # fmt: skip
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
            fig.add_trace(go.Scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", fillcolor=color,
                                     opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False),
                          row=row, col=col)  # fmt: skip
            fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line=dict(color=color), name=name,
                                     legendgroup=name, showlegend=name not in in_legend,
                                     hovertemplate=f"{lang} layer %{{x}}: {name} %{{y:.3f}}<extra></extra>"),
                          row=row, col=col)  # fmt: skip
            in_legend.add(name)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(title="Latent language: probability mass on English vs input-language tokens",
                      template="plotly_white", height=260 * rows + 80)  # fmt: skip
    return fig


def plnd_layer_figure(result: PLNDResult) -> go.Figure:
    """MWork Figure 3: language-specific neurons per layer, attention (Q, K, V, O together) vs
    FFN, one line per language; below, the same without the neurons every language shares."""
    exclusive = not result.selection.exclusive and len(result.languages) > 1
    titles = ["attention neurons (Q, K, V, O)", "FFN neurons"]
    if exclusive:
        titles += ["attention, not shared by all languages", "FFN, not shared by all languages"]
    fig = make_subplots(rows=1 + exclusive, cols=2, subplot_titles=titles, vertical_spacing=0.14)
    x = list(range(1, result.n_layers + 1))
    for i, lang in enumerate(result.languages):
        style = dict(color=_PALETTE[i % len(_PALETTE)], dash="dash" if lang == "en" else "solid")
        for row, which in enumerate(["plnd", "exclusive"][: 1 + exclusive], start=1):
            counts = result.per_layer(lang, which)
            attention = [sum(counts[s][layer] for s in counts if s != "ffn") for layer in range(result.n_layers)]
            ffn = counts.get("ffn", [0] * result.n_layers)
            for col, values, kind in ((1, attention, "attention"), (2, ffn, "FFN")):
                fig.add_trace(
                    go.Scatter(
                        x=x, y=values, mode="lines+markers", line=style, marker=dict(size=4),
                        name=f"{lang} · {language_name(lang)}", legendgroup=lang,
                        showlegend=(row, col) == (1, 1),
                        hovertemplate=f"{lang}, layer %{{x}}: %{{y}} {kind} neurons<extra></extra>",
                    ),
                    row=row, col=col,
                )  # fmt: skip
    fig.update_xaxes(title_text="layer", tickvals=x)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="neurons", col=1)
    fig.update_layout(title="PLND: language-specific neurons per layer", template="plotly_white",
                      height=460 + 360 * exclusive)  # fmt: skip
    return fig


def overlap_figure(result: PLNDResult) -> go.Figure:
    """Appendix C: Jaccard overlap between languages' neuron sets: PLND's, PLND's without the
    neurons all languages share, and LAPE's."""
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
                z=matrix, x=langs, y=langs, zmin=0, zmax=1, colorscale="Viridis", showscale=col == 1,
                text=[[f"{v:.2f}" for v in row] for row in matrix], texttemplate="%{text}",
                hovertemplate=f"{name}: %{{y}} vs %{{x}}: Jaccard %{{z:.3f}}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title="Overlap between languages' specific neurons (Jaccard index)",
                      template="plotly_white", height=440, width=None)  # fmt: skip
    return fig


def deactivation_figure(result: DeactivationResult, measure: str = "loss") -> go.Figure:
    """The paper's Table 1 as bars: per language, the damage when its own neurons are off, when
    as many random neurons are off (mean over seeds, sd as error bar), and the mean damage to
    the other languages when its neurons are off."""
    rows = result.table1(measure)
    x = [f"{r['language']} · {language_name(r['language'])}" for r in rows]
    fig = go.Figure()
    fig.add_bar(x=x, y=[r["language-specific: delta"] for r in rows], name="its own neurons off", marker_color="#E45756",
                customdata=[r["neurons off"] for r in rows],
                hovertemplate="%{x}: delta %{y:.3f} (%{customdata} neurons off)<extra></extra>")  # fmt: skip
    fig.add_bar(x=x, y=[r["random: delta (mean)"] for r in rows], name="as many random neurons off", marker_color="#BAB0AC",
                error_y=dict(type="data", array=[r["random: delta (sd)"] or 0 for r in rows]),
                hovertemplate="%{x}: random delta %{y:.3f}<extra></extra>")  # fmt: skip
    fig.add_bar(x=x, y=[r["other languages: mean delta"] for r in rows], name="other languages, its neurons off",
                marker_color="#4C78A8", hovertemplate="%{x}: other languages' mean delta %{y:.3f}<extra></extra>")  # fmt: skip
    unit = {"loss": "loss increase (nats/token)", "accuracy": "accuracy drop", "fidelity": "fidelity drop"}.get(measure, measure)
    fig.update_layout(title=f"Switching a language's neurons off: {unit}", barmode="group", template="plotly_white",
                      height=440, yaxis_title=unit)  # fmt: skip
    return fig


def cross_language_figure(result: DeactivationResult, measure: str = "loss") -> go.Figure:
    """Rows: whose neurons are off; columns: whose held-out loss is measured."""
    matrix = result.cross_matrix(measure)
    fig = go.Figure(go.Heatmap(
        z=matrix, x=result.languages, y=result.languages, colorscale="Reds", zmin=0,
        text=[[f"{v:.2f}" for v in row] for row in matrix], texttemplate="%{text}",
        hovertemplate="%{y}'s neurons off, %{x} measured: delta %{z:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed", title_text="neurons switched off")
    fig.update_xaxes(title_text="language measured")
    fig.update_layout(title=f"Cross-language effect of deactivation ({measure} delta)", template="plotly_white",
                      height=480, width=560)  # fmt: skip
    return fig


def settings_figure(result: DeactivationResult, measure: str = "loss") -> go.Figure:
    """Tables 2-5 as a heatmap: rows = settings (language-specific or random, per layer group),
    columns = languages, then Delta_Eng, Delta_nEng and Delta."""
    rows = result.settings_table(measure)
    columns = [c for c in rows[0] if c != "setting"]
    z = [[r[c] if r[c] is not None else float("nan") for c in columns] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=[r["setting"] for r in rows], colorscale="RdBu_r", zmid=0,
        text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
        hovertemplate="%{y}, %{x}: delta %{z:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"Deactivation settings ({measure} delta; positive = worse)", template="plotly_white",
                      height=120 + 34 * len(rows))  # fmt: skip
    return fig


_GAIN_UNITS = {"loss": "loss decrease (nats/token)", "accuracy": "accuracy gain", "fidelity": "fidelity gain"}


def enhancement_figure(result: EnhancementResult, measure: str = "loss") -> go.Figure:
    """MWork Figure 4 form: per target, the gain against training documents for the target,
    English and the other languages (mean), with the random-neuron control as separate markers."""
    targets = result.targets
    fig = make_subplots(rows=1, cols=len(targets), shared_yaxes=True,
                        subplot_titles=[f"trained: {t} · {language_name(t)}" for t in targets])  # fmt: skip
    table = result.table(measure)
    lines = (("target gain", "target", "#E45756"), ("English gain", "English", "#4C78A8"),
             ("other languages: mean gain", "other languages (mean)", "#72B7B2"))  # fmt: skip
    for col, target in enumerate(targets, start=1):
        for kind, dash, symbol in (("language", "solid", "circle"), ("random", "dot", "x")):
            rows = [r for r in table if r["target"] == target and r["neurons"] == kind]
            for key, name, color in lines:
                if not rows or all(r[key] is None for r in rows):
                    continue
                label = f"{name}, {'its neurons' if kind == 'language' else 'random neurons'}"
                fig.add_scatter(
                    x=[r["documents"] for r in rows], y=[r[key] for r in rows], name=label, legendgroup=label,
                    showlegend=col == 1, mode="lines+markers", line=dict(color=color, dash=dash),
                    marker=dict(symbol=symbol, size=9), row=1, col=col,
                    hovertemplate=f"{target}, {label}: %{{x}} documents, gain %{{y:.3f}}<extra></extra>",
                )  # fmt: skip
        fig.add_hline(y=0, line=dict(color="#999", width=1), row=1, col=col)
    fig.update_xaxes(title_text="training documents", type="log")
    fig.update_yaxes(title_text=_GAIN_UNITS.get(measure, measure), col=1)
    fig.update_layout(title=f"Training only a language's neurons: {_GAIN_UNITS.get(measure, measure)} (positive = better)",
                      template="plotly_white", height=460)  # fmt: skip
    return fig


def enhancement_matrix_figure(result: EnhancementResult, measure: str = "loss") -> go.Figure:
    """Rows: training runs (target · neurons · documents); columns: languages measured; cells: gain."""
    matrix = result.gain_matrix(measure)
    labels = [f"{r.target} · {'its neurons' if r.kind == 'language' else 'random'} · {r.size}" for r in result.runs]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=result.languages, y=labels, colorscale="RdBu", zmid=0,
        text=[[f"{v:.2f}" for v in row] for row in matrix], texttemplate="%{text}",
        hovertemplate="%{y}, %{x} measured: gain %{z:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed", title_text="training run")
    fig.update_xaxes(title_text="language measured")
    fig.update_layout(title=f"Every language after each run ({_GAIN_UNITS.get(measure, measure)}; blue = better)",
                      template="plotly_white", height=140 + 32 * len(labels))  # fmt: skip
    return fig


def training_curve_figure(result: EnhancementResult, window: int = 5) -> go.Figure:
    """Training loss per step of every run (moving average over ``window`` steps)."""
    fig = go.Figure()
    for run in result.runs:
        losses = run.losses
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
        fig.add_scatter(x=list(range(1, len(losses) + 1)), y=smooth, mode="lines",
                        name=f"{run.target} · {'its neurons' if run.kind == 'language' else 'random'} · {run.size}",
                        line=dict(dash="solid" if run.kind == "language" else "dot"))  # fmt: skip
    fig.update_layout(title=f"Training loss (nats/token, moving average of {window} steps)", template="plotly_white",
                      height=420, xaxis_title="step", yaxis_title="loss")  # fmt: skip
    return fig


_FFN_MEASURES = {"sparsity": "sparsity (share of near-zero values)", "frequency": "mean activation frequency",
                 "rare": "share of units active < 1%", "flatness": "flatness (entropy / log units)"}  # fmt: skip


def ffn_layer_figure(result: FFNResult, sublayer: str = "detector") -> go.Figure:
    """Per-layer curves per language: sparsity, activation frequency, rarely active units, flatness."""
    names = list(_FFN_MEASURES)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[_FFN_MEASURES[m] for m in names], vertical_spacing=0.14)
    layers = list(range(result.n_layers))
    for k, measure in enumerate(names):
        row, col = divmod(k, 2)
        for i, lang in enumerate(result.languages):
            fig.add_scatter(x=layers, y=result.metrics[sublayer][measure][lang], mode="lines+markers", name=lang,
                            legendgroup=lang, showlegend=k == 0, marker=dict(size=4),
                            line=dict(color=_PALETTE[i % len(_PALETTE)]), row=row + 1, col=col + 1,
                            hovertemplate=f"{lang}, layer %{{x}}: %{{y:.3f}}<extra></extra>")  # fmt: skip
    fig.update_xaxes(title_text="layer")
    fig.update_layout(title=f"FFN {sublayer}s per layer and language", template="plotly_white", height=620)
    return fig


def ffn_correlation_figure(result: FFNResult, sublayer: str = "detector") -> go.Figure:
    """Per layer, the mean Spearman correlation of the units' mean activations between languages:
    on parallel verses, on unrelated verses, their difference, and a language against itself on
    other verses."""
    cross = result.cross_language(sublayer)
    layers = list(range(result.n_layers))
    styles = {"parallel": ("#E45756", "solid"), "unrelated": ("#4C78A8", "solid"),
              "same language": ("#54A24B", "dot"), "difference": ("#333333", "dash")}  # fmt: skip
    labels = {"parallel": "other language, same verses", "unrelated": "other language, other verses",
              "same language": "same language, other verses", "difference": "parallel - unrelated"}  # fmt: skip
    fig = go.Figure()
    for key, (color, dash) in styles.items():
        fig.add_scatter(x=layers, y=cross[key], mode="lines+markers", name=labels[key], line=dict(color=color, dash=dash),
                        hovertemplate=f"{labels[key]}, layer %{{x}}: rho %{{y:.3f}}<extra></extra>")  # fmt: skip
    fig.update_layout(title=f"Rank correlation of FFN {sublayer} usage between languages (Spearman, mean over pairs)",
                      template="plotly_white", height=420, xaxis_title="layer", yaxis_title="Spearman rho")  # fmt: skip
    return fig


def ffn_heatmap_figure(result: FFNResult, sublayer: str = "detector", layers: list[int] | None = None) -> go.Figure:
    """Language-by-language Spearman matrices at a few layers: parallel verses (top), unrelated (bottom)."""
    n = result.n_layers
    layers = layers if layers is not None else sorted({0, n // 2, n - 1})
    fig = make_subplots(rows=2, cols=len(layers), horizontal_spacing=0.06, vertical_spacing=0.12,
                        subplot_titles=[f"{kind}, layer {layer}" for kind in ("parallel", "unrelated") for layer in layers])  # fmt: skip
    for row, kind in enumerate(("parallel", "unrelated"), start=1):
        matrices = result.correlation(sublayer, kind)
        for col, layer in enumerate(layers, start=1):
            m = matrices[layer]
            fig.add_trace(go.Heatmap(
                z=m, x=result.languages, y=result.languages, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
                showscale=row == 1 and col == 1, text=[[f"{v:.2f}" for v in r] for r in m], texttemplate="%{text}",
                hovertemplate=f"{kind}, layer {layer}: %{{y}} vs %{{x}}: rho %{{z:.3f}}<extra></extra>",
            ), row=row, col=col)  # fmt: skip
            fig.update_yaxes(autorange="reversed", row=row, col=col)
    fig.update_layout(title=f"Spearman correlation of FFN {sublayer} usage between languages", template="plotly_white",
                      height=760)  # fmt: skip
    return fig


def similarity_figure(result: FFNResult, measure: str = "cka") -> go.Figure:
    """Layer-by-layer similarity heatmaps: for each compared pair of models, detectors and combinators."""
    entries = [s for s in result.similarity if s["measure"] == measure]
    titles = [f"{s['sublayer']}s: {s['a']} vs {s['b']}" for s in entries]
    fig = make_subplots(rows=max(1, len(entries) // 2), cols=2, subplot_titles=titles, vertical_spacing=0.12,
                        horizontal_spacing=0.1)  # fmt: skip
    for k, s in enumerate(entries):
        row, col = divmod(k, 2)
        m = s["matrix"]
        fig.add_trace(go.Heatmap(
            z=m, zmin=0, zmax=1, colorscale="Viridis", showscale=k == 0,
            hovertemplate=f"{s['a']} layer %{{y}} vs {s['b']} layer %{{x}}: {measure} %{{z:.3f}}<extra></extra>",
        ), row=row + 1, col=col + 1)  # fmt: skip
        fig.update_yaxes(autorange="reversed", title_text=f"{s['a']} layer", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text=f"{s['b']} layer", row=row + 1, col=col + 1)
    label = {"cka": "linear CKA", "rsa": "correlation of correlations"}.get(measure, measure)
    fig.update_layout(title=f"Layer-by-layer similarity ({label}) on the same verses", template="plotly_white",
                      height=80 + 440 * max(1, len(entries) // 2))  # fmt: skip
    return fig
