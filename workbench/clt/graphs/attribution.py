"""Attribution graphs on the local replacement model (Ameisen et al. 2025, "Circuit Tracing").

The method of arXiv 2511.10840's graphs, on the model's pass over one prompt with its patterns and
norm scales frozen and its MLPs replaced by the transcoder plus error nodes
([`workbench.clt.graphs.local_replacement`][workbench.clt.graphs.local_replacement]).

A graph's edges are the *direct effects* of its nodes on each other
([`workbench.clt.graphs.direct_effects`][workbench.clt.graphs.direct_effects]). As the frozen model is affine in
its sources, every node's value is a constant (its *bias*: what it reads with every source at zero)
plus the sum of its direct effects: [`completeness_error`][workbench.clt.graphs.attribution.completeness_error]
measures this on any graph, and ``tests/clt/test_graph.py`` holds each edge to a finite difference
on the frozen model. A skip transcoder's skip is part of the frozen model (a linear path through
the frozen norm), not a node, so this holds with it too (``tests/clt/test_skip_graphs.py``).

With more active features than ``max_features``, features are visited in order of their
influence on the targets so far (circuit-tracer's greedy order); the rest stay out of the graph,
and the share of direct effect they held is recorded as ``unexplained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from workbench.clt.graphs.direct_effects import Gradients, Sources, by_influence
from workbench.clt.graphs.graph import TARGET, Graph, TargetInfo
from workbench.clt.graphs.local_replacement import PromptState, frozen_forward, read_prompt
from workbench.clt.transcoder import CrossLayerTranscoder, check_fits
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerBase

    from workbench.models.model import Model


@dataclass
class Target:
    """What a graph explains: ``vector . x + offset`` at the last position.

    ``x`` is the input of the unembedding (after the final norm). A demeaned logit has
    ``vector = W_U[:, token] - mean_k W_U[:, k]`` (and the demeaned bias as offset).

    Attributes:
        label: Its name in the graph.
        vector: The direction read.
        token: The logit's token; -1 for a direction.
        weight: Its weight in influence: a logit's probability.
    """

    label: str
    vector: Float[torch.Tensor, " d_model"]
    token: int = -1
    weight: float = 1.0


def logit_targets(
    model: Model, logits: Float[torch.Tensor, " d_vocab"], probability: float = 0.95, max_logits: int = 5
) -> list[Target]:
    """The most likely next tokens that together cover ``probability`` (at most ``max_logits``).

    From the last position's ``logits``, each weighted by its probability.
    """
    probs = torch.softmax(logits.double(), -1)
    top = torch.topk(probs, min(max_logits, len(probs)))
    n = int(torch.searchsorted(top.values.cumsum(0), torch.tensor(probability, dtype=torch.float64))) + 1
    return [logit_target(model, int(t), float(p)) for t, p in zip(top.indices[:n], top.values[:n])]


def logit_target(model: Model, token: int, weight: float = 1.0) -> Target:
    """The demeaned logit of one token id (checked against the vocabulary)."""
    if not 0 <= token < model.cfg.d_vocab:
        raise WorkbenchError(f"Token id {token} is outside the model's vocabulary (0..{model.cfg.d_vocab - 1}).")
    W_U = model.W_U.detach()
    return Target(_token_label(model, token), W_U[:, token] - W_U.mean(1), token, weight)


def token_target(model: Model, text: str) -> Target:
    """The logit of ``text``, which must be one token of the model's vocabulary."""
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        tokenizer = cast("PreTrainedTokenizerBase", model.tokenizer)  # to_tokens above needed it
        pieces = [tokenizer.decode([i]) for i in ids]
        raise WorkbenchError(
            f"Target {text!r} is {len(ids)} tokens in this model's vocabulary ({pieces}), not one; "
            "give a single token (often with its leading space, e.g. ' dog')."
        )
    return logit_target(model, ids[0])


def direction_target(vector: Float[torch.Tensor, " d_model"], label: str) -> Target:
    """A direction in the unembedding's input space (e.g. a language direction)."""
    return Target(label, vector.detach().float())


def mean_unembedding(model: Model, tokens: list[int], label: str) -> Target:
    """A language (or any token set) direction.

    The mean unembedding of ``tokens`` minus the mean over the whole vocabulary.
    """
    if not tokens:
        raise WorkbenchError(f"No tokens for the direction {label!r}: the vocabulary has none of that kind.")
    W_U = model.W_U.detach()
    return direction_target(W_U[:, tokens].mean(1) - W_U.mean(1), label)


def _token_label(model: Model, token: int) -> str:
    """A target's label: its token's text, quoted (its id where the model has no tokenizer)."""
    return repr(_token_text(model, token)) if model.tokenizer is not None else str(token)


def _token_text(model: Model, token: int) -> str:
    """A token's text (its id where the model has no tokenizer)."""
    if model.tokenizer is None:
        return str(token)
    return cast(str, model.tokenizer.decode([token]))  # one sequence of ids decodes to one string


def target_value(state: PromptState, target: Target) -> float:
    """A target's value on the prompt (without the logit's bias: that is part of its bias)."""
    return float(state.final[-1] @ target.vector.to(state.final))


def check_hooked(model: Model) -> HookedTransformer:
    """Refuse a model loaded through TransformerBridge.

    The frozen replacement model reads HookedTransformer's norm scales and blocks.

    Returns:
        The model, as the ``HookedTransformer`` it is.

    Raises:
        WorkbenchError: A ``TransformerBridge``.
    """
    from transformer_lens import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise WorkbenchError(
            f"Attribution graphs need a HookedTransformer; {model.cfg.model_name} is loaded through "
            "TransformerBridge (its architecture has no HookedTransformer converter). Run the other "
            "analyses on it; `workbench models` lists the families that convert."
        )
    return model


def check_prompt(model: Model, clt: CrossLayerTranscoder, tokens: Int[torch.Tensor, " pos"]) -> HookedTransformer:
    """Refuse a bridged model, an empty or over-long prompt, and a transcoder of another shape.

    Returns:
        The model, as the ``HookedTransformer`` it is.

    Raises:
        WorkbenchError: Any of those, with what to change.
    """
    hooked = check_hooked(model)
    check_fits(clt, model)
    if tokens.dim() != 1 or len(tokens) < 2:
        raise WorkbenchError("The prompt is empty: give some text to attribute (it gets a BOS token in front).")
    if len(tokens) > model.cfg.n_ctx:
        raise WorkbenchError(
            f"The prompt is {len(tokens)} tokens; the model's context is {model.cfg.n_ctx}. Shorten it."
        )
    return hooked


def attribute(
    model: Model,
    clt: CrossLayerTranscoder,
    tokens: Int[torch.Tensor, " pos"],
    targets: list[Target] | None = None,
    *,
    probability: float = 0.95,
    max_logits: int = 5,
    max_features: int | None = None,
    batch: int = 32,
    prompt: str = "",
    show_progress: bool = False,
) -> Graph:
    """The attribution graph of one prompt.

    Args:
        model: A ``HookedTransformer`` (a bridged model is refused).
        clt: A transcoder of the model's shape.
        tokens: The prompt, BOS first.
        targets: What to explain (default: the top logits covering ``probability``, at most
            ``max_logits``).
        probability: The probability the default targets cover.
        max_logits: The most default targets.
        max_features: Visit at most this many active features, the most influential first (None:
            every one; only then is the graph complete).
        batch: Target nodes per backward pass (the prompt is repeated this many times).
        prompt: The prompt's text, recorded in the graph.
        show_progress: Show a progress bar over the features.

    Raises:
        WorkbenchError: A bridged model, an empty or over-long prompt, or a transcoder of another shape.
    """
    hooked = check_prompt(model, clt, tokens)
    with torch.no_grad():
        state = read_prompt(hooked, clt, tokens.to(hooked.cfg.device))
    targets = targets or logit_targets(hooked, state.logits, probability, max_logits)
    sources = Sources(clt, state)
    limit = sources.n_active if max_features is None else min(max_features, sources.n_active)
    rows = np.zeros((len(targets) + limit, sources.n_columns), np.float32)
    row_node = np.full(len(rows), -1)  # the column of each feature row (-1: a target row)
    grad = Gradients(hooked, clt, state, batch)
    for i in range(0, len(targets), batch):
        chunk = targets[i : i + batch]
        rows[i : i + len(chunk)] = grad.rows([(None, t.vector) for t in chunk], sources)
    visited = _visit(grad, sources, targets, rows, row_node, batch, show_progress)
    return _graph(hooked, clt, state, sources, targets, rows, row_node, visited, prompt)


def _visit(
    grad: Gradients,
    sources: Sources,
    targets: list[Target],
    rows: np.ndarray,
    row_node: np.ndarray,
    batch: int,
    show_progress: bool,
) -> np.ndarray:
    """Fill the feature rows after the target rows, ``batch`` features at a time.

    In column order when every active feature has a row, else the most influential on the targets
    so far first. Returns which active features were visited.
    """
    limit = len(rows) - len(targets)
    visited = np.zeros(sources.n_active, bool)
    done = len(targets)
    with tqdm(total=limit, desc="attribution", unit=" features", disable=not show_progress) as bar:
        while done < len(rows):
            if limit == sources.n_active:  # every feature gets visited: the order does not matter
                order = np.nonzero(~visited)[0]
            else:
                order = by_influence(
                    rows[:done], row_node[:done], np.array([t.weight for t in targets]), sources.n_active
                )
            pick = [int(j) for j in order if not visited[j]][: min(batch, len(rows) - done)]
            rows[done : done + len(pick)] = grad.rows([(j, None) for j in pick], sources)
            row_node[done : done + len(pick)] = pick
            visited[pick] = True
            done += len(pick)
            bar.update(len(pick))
    return visited


@torch.no_grad()
def completeness_error(
    model: HookedTransformer, clt: CrossLayerTranscoder, graph: Graph, targets: list[Target] | None = None
) -> float:
    """How far ``graph`` is from complete, relative to the largest node value.

    The largest ``|bias + sum of direct effects - value|`` over its feature and target nodes.
    Values and biases are read on the frozen model (a bias: the node's value with every source at
    zero, the transcoder writing its decoder bias, and a skip transcoder's skip of the MLP inputs
    that zero sources leave). Only a graph that visited every active feature is complete.

    Args:
        model: The model the graph was made on.
        clt: Its transcoder.
        graph: The graph.
        targets: Those the graph was built for (default: its logits).

    Raises:
        WorkbenchError: A graph that left features out.
    """
    if graph.meta.get("unexplained", 0.0) > 0:
        raise WorkbenchError("The graph left features out (--clt-graph-max-features): it cannot be complete.")
    tokens = torch.tensor(graph.tokens, device=model.cfg.device)
    state = read_prompt(model, clt, tokens)
    targets = targets or [logit_target(model, t.token) for t in graph.targets]
    L = graph.n_layers
    no_features = [torch.zeros_like(state.acts[0])] * L
    decoder_bias = [clt.decode_layer(no_features[: l + 1], l)[None] for l in range(L)]
    actual = _node_values(model, clt, state, graph, targets, state.start[None], [w[None] for w in state.writes])
    bias = _node_values(model, clt, state, graph, targets, torch.zeros_like(state.start[None]), decoder_bias)
    rows = graph.adjacency.astype(np.float64)[np.r_[: graph.n_features, graph.span(TARGET)]]
    return float(np.abs(bias + rows.sum(1) - actual).max() / np.abs(actual).max())


def _node_values(
    model: HookedTransformer,
    clt: CrossLayerTranscoder,
    state: PromptState,
    graph: Graph,
    targets: list[Target],
    start: torch.Tensor,
    writes: list[torch.Tensor],
) -> np.ndarray:
    """Every feature's pre-activation and every target's value on the frozen model from ``start`` and ``writes``."""
    mlp_in, final = frozen_forward(model, state, start, writes)
    pre = [clt.layer_pre_activations(x[0], layer) for layer, x in enumerate(mlp_in)]  # [pos, F] per layer
    features = [pre[layer][pos, feature] for layer, pos, feature in graph.features]
    values = [final[0, -1] @ t.vector.to(final) for t in targets]
    return torch.stack(features + values).double().cpu().numpy()


def _graph(
    model: Model,
    clt: CrossLayerTranscoder,
    state: PromptState,
    sources: Sources,
    targets: list[Target],
    rows: np.ndarray,
    row_node: np.ndarray,
    visited: np.ndarray,
    prompt: str,
) -> Graph:
    """The square adjacency over the visited features, errors, tokens and targets."""
    selected = np.nonzero(visited)[0]  # column order is (layer, position, feature)
    n_sel, n_rest = len(selected), sources.n_columns - sources.n_active
    keep_cols = np.concatenate([selected, sources.n_active + np.arange(n_rest)])
    n = n_sel + n_rest + len(targets)
    adjacency = np.zeros((n, n), np.float32)
    position_of = {int(c): i for i, c in enumerate(selected)}
    for r, node in enumerate(row_node):
        at = n_sel + n_rest + r if node < 0 else position_of[int(node)]
        adjacency[at, : n_sel + n_rest] = rows[r, keep_cols]
    dropped = np.setdiff1d(np.arange(sources.n_active), selected)
    total = np.abs(rows).sum()
    unexplained = float(np.abs(rows[:, dropped]).sum() / total) if total > 0 and len(dropped) else 0.0
    tokens = state.tokens.tolist()
    info = [TargetInfo(t.label, t.token, t.weight, target_value(state, t)) for t in targets]
    meta = {
        "active_features": int(sources.n_active),
        "unexplained": unexplained,
        "transcoder": getattr(clt.config, "model", ""),
        "skip": clt.W_skip is not None,  # the error nodes are net of a skip, which is no node
    }
    return Graph(
        prompt,
        tokens,
        [_token_text(model, t) for t in tokens],
        clt.config.n_layers,
        sources.index[selected].cpu().numpy(),
        sources.values[selected].cpu().numpy(),
        state.errors.norm(dim=-1).cpu().numpy(),
        info,
        adjacency,
        meta,
    )


__all__ = [
    "Target",
    "attribute",
    "check_hooked",
    "check_prompt",
    "completeness_error",
    "direction_target",
    "logit_target",
    "logit_targets",
    "mean_unembedding",
    "target_value",
    "token_target",
]
