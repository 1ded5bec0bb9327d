"""A pruned attribution graph drawn with plotly: position across, layer up.

Plotting only: the nodes, edges and influence come from [`Graph`][workbench.clt.graphs.graph.Graph] and
[`Pruned`][workbench.clt.graphs.graph.Pruned]; labels (a feature's top tokens, see
[`workbench.clt.graphs.export.top_tokens`][workbench.clt.graphs.export.top_tokens]) come from the caller.
Nothing is computed here but the layout. Token nodes sit in the bottom row ("emb"), targets in
the top one ("logit"); the nodes of one (layer, position) cell are spread sideways so that each
stays visible.
"""

from __future__ import annotations

import html
from collections import defaultdict

import numpy as np
import plotly.graph_objects as go

from workbench.clt.graphs.graph import ERROR, FEATURE, TARGET, TOKEN, Graph, Pruned

KIND_COLORS = {FEATURE: "#6a3d9a", ERROR: "#9e9e9e", TOKEN: "#e6a117", TARGET: "#2ca02c"}
EDGE_COLORS = {"positive": "31, 119, 180", "negative": "214, 39, 40"}  # blue, red (rgb)
EDGE_LEVELS = 4  # edges are drawn in this many strength bands per sign (a trace has one width)
SPREAD = 0.12  # the sideways gap between nodes of one cell, in positions (shrunk in crowded cells)


def layout(graph: Graph, pruned: Pruned) -> dict[int, tuple[float, float]]:
    """Each kept node's ``(x, y)``.

    ``x`` is its position (plus a sideways offset within its cell), ``y`` its layer (-1 for
    tokens, ``n_layers`` for targets).
    """
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for node in np.nonzero(pruned.nodes)[0].tolist():
        d = graph.describe(node)
        cells[(d["layer"], d["position"])].append(node)
    places = {}
    for (layer, pos), nodes in cells.items():
        step = min(SPREAD, 0.8 / len(nodes))
        for j, node in enumerate(nodes):
            places[node] = (pos + (j - (len(nodes) - 1) / 2) * step, float(layer))
    return places


def hover_text(graph: Graph, pruned: Pruned, node: int, labels: dict[int, str]) -> str:
    """A node's hover: kind, where it sits, activation, influence, and its label if the caller gave one."""
    d = graph.describe(node)
    token = html.escape(repr(graph.token_strings[d["position"]]), quote=False)
    lines = [
        f"<b>{d['kind']}</b>" + (f" {html.escape(d['label'], quote=False)}" if "label" in d else ""),
        f"L{d['layer']}/{d['index']} @ {d['position']} {token}",
        f"activation {d['activation']:.4g}",
        f"influence {float(pruned.influence[node]):.4g}",
    ]
    if node in labels:
        lines.append(html.escape(labels[node], quote=False))
    return "<br>".join(lines)


def _sizes(graph: Graph, pruned: Pruned, nodes: list[int]) -> list[float]:
    """Marker sizes by influence (targets by their weight, the influence they hand out), 6 to 24 px."""
    weights = graph.target_weights()
    values = np.array([weights[n] if graph.kind_of(n) == TARGET else pruned.influence[n] for n in nodes], np.float64)
    top = values.max() if len(values) and values.max() > 0 else 1.0
    return (6 + 18 * np.sqrt(np.clip(values, 0, None) / top)).tolist()


def _edge_traces(
    graph: Graph, pruned: Pruned, places: dict[int, tuple[float, float]], max_edges: int
) -> list[go.Scatter]:
    """The ``max_edges`` strongest kept edges as line traces: per sign, a few bands of width and opacity."""
    kept = pruned.edges & pruned.nodes[:, None] & pruned.nodes[None, :]
    targets, sources = np.nonzero(kept)
    weights = graph.adjacency[targets, sources].astype(np.float64)
    order = np.argsort(-np.abs(weights), kind="stable")[:max_edges]
    if len(order) == 0:
        return []
    strength = np.abs(weights[order]) / max(np.abs(weights[order]).max(), 1e-30)
    level = np.minimum((strength * EDGE_LEVELS).astype(int), EDGE_LEVELS - 1)
    traces = []
    for sign, name in ((1, "positive"), (-1, "negative")):
        for band in range(EDGE_LEVELS):
            picked = order[(np.sign(weights[order]) == sign) & (level == band)]
            if len(picked) == 0:
                continue
            xs, ys = [], []
            for e in picked:
                (x0, y0), (x1, y1) = places[int(sources[e])], places[int(targets[e])]
                xs += [x0, x1, None]
                ys += [y0, y1, None]
            share = (band + 1) / EDGE_LEVELS
            line = dict(width=0.5 + 3 * share, color=f"rgba({EDGE_COLORS[name]}, {0.15 + 0.75 * share:.2f})")
            first = not any(t.legendgroup == name for t in traces)  # one legend entry per sign
            traces.append(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=f"{name} edges",
                    legendgroup=name,
                    line=line,
                    showlegend=first,
                    hoverinfo="skip",
                )
            )
    return traces


def graph_figure(
    graph: Graph, pruned: Pruned, labels: dict[int, str] | None = None, title: str = "", max_edges: int = 400
) -> go.Figure:
    """The kept nodes and the ``max_edges`` strongest kept edges of a pruned graph.

    x the position (ticks: the prompt's tokens), y the layer; colour by node kind, size by
    influence; edges blue (positive) or red (negative), wider and darker the stronger.

    Args:
        graph: The graph.
        pruned: What its pruning kept.
        labels: Node index -> text, shown in the hover.
        title: The figure's title.
        max_edges: The most edges drawn (the strongest).
    """
    labels = labels or {}
    places = layout(graph, pruned)
    fig = go.Figure(_edge_traces(graph, pruned, places, max_edges))
    for kind in (FEATURE, ERROR, TOKEN, TARGET):
        nodes = [n for n in range(graph.span(kind).start, graph.span(kind).stop) if n in places]
        if not nodes:
            continue
        fig.add_scatter(
            x=[places[n][0] for n in nodes],
            y=[places[n][1] for n in nodes],
            mode="markers",
            name=kind,
            marker=dict(
                color=KIND_COLORS[kind], size=_sizes(graph, pruned, nodes), line=dict(width=0.5, color="white")
            ),
            hovertext=[hover_text(graph, pruned, n, labels) for n in nodes],
            hoverinfo="text",
        )
    rows = [-1, *range(graph.n_layers), graph.n_layers]
    ticks = [html.escape(s, quote=False) for s in graph.token_strings]
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(graph.n_pos)),
        ticktext=ticks,
        title_text="position",
        showgrid=False,
        zeroline=False,
    )
    fig.update_yaxes(
        tickmode="array",
        tickvals=rows,
        ticktext=["emb", *(f"L{l}" for l in range(graph.n_layers)), "logit"],
        title_text="layer",
        zeroline=False,
    )
    fig.update_layout(
        title=title, template="plotly_white", height=max(420, 90 * (graph.n_layers + 2)), hovermode="closest"
    )
    return fig


__all__ = ["graph_figure", "hover_text", "layout"]
