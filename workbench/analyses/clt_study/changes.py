"""Several clt-study results side by side: did more faithful transcoders change the answers?

The same claims asked through transcoders of different faithfulness (for example the plain
per-layer set and the skip transcoders that replaced it) can get different verdicts. These tables
put each claim's verdict and each study's faithfulness next to each other, so a reader sees which
answers moved when the replacement model came closer to the model.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analyses.clt_study.findings import finite_mean
from workbench.analyses.clt_study.result import Result

SAID = {True: "holds", False: "does not hold", None: "not measurable"}


def verdict_table(studies: dict[str, Result]) -> list[dict]:
    """One row per claim: its verdict in each study ("not asked" where a study has no such claim)."""
    claims: list[str] = []
    for study in studies.values():
        claims += [f.claim for f in study.findings if f.claim not in claims]
    rows = []
    for claim in claims:
        row: dict = {"claim": claim}
        for name, study in studies.items():
            found = [f for f in study.findings if f.claim == claim]
            row[name] = SAID[found[0].holds] if found else "not asked"
        rows.append(row)
    return rows


def faithfulness_table(studies: dict[str, Result]) -> list[dict]:
    """One row per study: the replacement's faithfulness, and the graph and steering numbers it reads."""
    return [_faithfulness(name, study) for name, study in studies.items()]


def _faithfulness(name: str, study: Result) -> dict:
    extra = [replaced - original for original, replaced in study.loss.values()]
    return {
        "study": name,
        "layers": len(study.layers),
        "worst FVU (max over layers)": max(study.fvu),
        "worst FVU (min over layers)": min(study.fvu),
        "L0 (max over layers)": max(study.l0),
        "extra loss, best language": min(extra),
        "extra loss, worst language": max(extra),
        "graph replacement": study.graphs.get("replacement", math.nan),
        "graph completeness": study.graphs.get("completeness", math.nan),
        "mean Jaccard": finite_mean(study.jaccard),
        "steering pairs that work": sum(bool(r.get("works")) for r in study.steering),
        "steering pairs": len(study.steering),
    }


def changes_figure(studies: dict[str, Result]) -> go.Figure:
    """Per layer, each study's worst-language FVU and its multilingual and language-specific features."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.07,
        subplot_titles=("FVU, worst language", "multilingual features", "language-specific features"),
    )
    for name, study in studies.items():
        for col, values in enumerate((study.fvu, study.multilingual, study.specific), start=1):
            fig.add_trace(
                go.Scatter(x=study.layers, y=values, name=name, legendgroup=name, showlegend=col == 1),
                1,
                col,
            )
    fig.update_xaxes(title_text="layer")
    fig.update_layout(title="The same claims through different transcoders", template="plotly_white", height=380)
    return fig
