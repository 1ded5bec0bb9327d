"""Small graphs kept in a result for the report, and their figure.

A view is a pruned graph's kept features and strongest edges, with each feature's top tokens, as
plain JSON: a result file carries it, and the report draws it without the model or the transcoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from workbench.clt.graphs.export import top_tokens
from workbench.clt.graphs.graph import Graph, Pruned
from workbench.clt.graphs.view import graph_figure
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.prompts import ParallelPrompt
from workbench.models.model import Model


def stored_view(
    model: Model, clt: CrossLayerTranscoder, graph: Graph, pruned: Pruned, prompt: ParallelPrompt
) -> dict[str, Any]:
    """A small pruned graph of ``prompt`` (kept features, strongest edges) with each feature's top tokens.

    Returns:
        The view as JSON-ready data: the prompt's task, item and language, the small graph, its
        pruning (``nodes``, ``cumulative``, ``influence``) and the features' labels by node.
    """
    small, kept = graph.subgraph(pruned)
    labels = top_tokens(model, clt, small.features) if small.n_features else []
    return {
        "task": prompt.task,
        "item": prompt.item,
        "language": prompt.language,
        "graph": small.to_dict(),
        "nodes": kept.nodes.tolist(),
        "cumulative": kept.cumulative.tolist(),
        "influence": kept.influence.tolist(),
        "labels": {str(i): text for i, text in enumerate(labels)},
    }


def view_of(view: dict[str, Any]) -> tuple[Graph, Pruned, dict[int, str]]:
    """A stored view back as the graph, pruning and labels the figure draws."""
    graph = Graph.from_dict(view["graph"])
    pruned = Pruned(
        np.array(view["nodes"], bool), graph.adjacency != 0, np.array(view["cumulative"]), np.array(view["influence"])
    )
    return graph, pruned, {int(k): v for k, v in view["labels"].items()}


def view_figure(graph: Graph, pruned: Pruned, labels: dict[int, str], view: dict[str, Any]) -> go.Figure:
    """One stored graph drawn by [`graph_figure`][workbench.clt.graphs.view.graph_figure], titled by its prompt."""
    title = f"{view['task']} {view['item']} · {view['language']}: {graph.prompt!r}"
    return graph_figure(graph, pruned, labels, title=title)
