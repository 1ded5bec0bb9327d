"""Figures of the deactivation slice (MWork Tables 1-5 as plots).

Plotting only: every function takes a result, computes nothing.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data.languages import language_name
from workbench.interventions.deactivation_results import AblationResult, DeactivationResult
from workbench.neurons.selection import SET_NAMES

_UNITS = {"loss": "loss increase (nats/token)", "accuracy": "accuracy drop", "fidelity": "fidelity drop"}


def comparison_figure(result: AblationResult, measure: str = "loss") -> go.Figure:
    """The claim in one figure: per set kind, each language's damage beside the other languages'.

    One panel per set kind: each language's damage when its own neurons are off, beside the mean
    damage to the other languages. Specific neurons hurt their own language more than the others;
    shared ones hurt every language alike.
    """
    kinds = list(result.experiments)
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=[SET_NAMES.get(k, k) for k in kinds])
    rows = result.comparison(measure)
    for col, kind in enumerate(kinds, start=1):
        mine = [r for r in rows if r["sets"] == kind]
        x = [f"{r['language']} · {language_name(r['language'])}" for r in mine]
        for key, name, color in (
            ("own language: delta", "the language whose neurons are off", "#E45756"),
            ("other languages: mean delta", "the other languages (mean)", "#4C78A8"),
            ("random: delta (mean)", "as many random neurons off", "#BAB0AC"),
        ):
            fig.add_bar(
                x=x,
                y=[r[key] for r in mine],
                name=name,
                marker_color=color,
                legendgroup=name,
                showlegend=col == 1,
                customdata=[r["neurons off"] for r in mine],
                hovertemplate=f"%{{x}}, {kind}: {name} %{{y:.3f}} (%{{customdata}} neurons off)<extra></extra>",
                row=1,
                col=col,
            )
    unit = _UNITS.get(measure, measure)
    fig.update_yaxes(title_text=unit, col=1)
    fig.update_layout(
        title=f"Switching a language's neurons off, with and without the shared neurons: {unit}",
        barmode="group",
        template="plotly_white",
        height=460,
        legend=dict(orientation="h", y=-0.15),
    )
    return fig


def deactivation_figure(result: DeactivationResult, measure: str = "loss", label: str = "") -> go.Figure:
    """The paper's Table 1 as bars: per language, its own neurons off against random ones.

    Per language: the damage when its own neurons are off, when as many random neurons are off
    (mean over seeds, sd as error bar), and the mean damage to the other languages when its
    neurons are off.
    """
    rows = result.table1(measure)
    x = [f"{r['language']} · {language_name(r['language'])}" for r in rows]
    fig = go.Figure()
    fig.add_bar(
        x=x,
        y=[r["language-specific: delta"] for r in rows],
        name="its own neurons off",
        marker_color="#E45756",
        customdata=[r["neurons off"] for r in rows],
        hovertemplate="%{x}: delta %{y:.3f} (%{customdata} neurons off)<extra></extra>",
    )
    fig.add_bar(
        x=x,
        y=[r["random: delta (mean)"] for r in rows],
        name="as many random neurons off",
        marker_color="#BAB0AC",
        error_y=dict(type="data", array=[r["random: delta (sd)"] or 0 for r in rows]),
        hovertemplate="%{x}: random delta %{y:.3f}<extra></extra>",
    )
    fig.add_bar(
        x=x,
        y=[r["other languages: mean delta"] for r in rows],
        name="other languages, its neurons off",
        marker_color="#4C78A8",
        hovertemplate="%{x}: other languages' mean delta %{y:.3f}<extra></extra>",
    )
    unit = _UNITS.get(measure, measure)
    fig.update_layout(
        title=f"Switching a language's neurons off: {unit}{label}",
        barmode="group",
        template="plotly_white",
        height=440,
        yaxis_title=unit,
    )
    return fig


def cross_language_figure(result: DeactivationResult, measure: str = "loss", label: str = "") -> go.Figure:
    """Rows: whose neurons are off; columns: whose held-out loss is measured."""
    matrix = result.cross_matrix(measure)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=result.languages,
            y=result.languages,
            colorscale="Reds",
            zmin=0,
            text=[[f"{v:.2f}" for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="%{y}'s neurons off, %{x} measured: delta %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="neurons switched off")
    fig.update_xaxes(title_text="language measured")
    fig.update_layout(
        title=f"Cross-language effect of deactivation ({measure} delta){label}",
        template="plotly_white",
        height=480,
        width=560,
    )
    return fig


def settings_figure(result: DeactivationResult, measure: str = "loss", label: str = "") -> go.Figure:
    """Tables 2-5 as a heatmap: one row per setting, one column per language.

    Rows: language-specific or random, per layer group; columns: the languages, then Delta_Eng,
    Delta_nEng and Delta.
    """
    rows = result.settings_table(measure)
    columns = [c for c in rows[0] if c != "setting"]
    z = [[r[c] if r[c] is not None else float("nan") for c in columns] for r in rows]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=[r["setting"] for r in rows],
            colorscale="RdBu_r",
            zmid=0,
            text=[[f"{v:.2f}" for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: delta %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=f"Deactivation settings ({measure} delta; positive = worse){label}",
        template="plotly_white",
        height=120 + 34 * len(rows),
    )
    return fig


_GAIN_UNITS = {"loss": "loss decrease (nats/token)", "accuracy": "accuracy gain", "fidelity": "fidelity gain"}
