"""Attribution graphs on the local replacement model (Ameisen et al. 2025, "Circuit Tracing";
the method of arXiv 2511.10840's graphs).

The *local replacement model* of one prompt is the model's own forward pass with, by hooks:

* every attention pattern (``blocks.{l}.attn.hook_pattern``) and every norm's scale (every
  ``hook_scale``) frozen at its value on the prompt, so the map from the residual stream's inputs
  to any later point is affine (a stop-gradient in the backward pass);
* every MLP output (``blocks.{l}.hook_mlp_out``) replaced by what the transcoder writes there,
  from features read on the model's own MLP inputs, plus an *error node*: the true output minus
  that reconstruction. So the replacement model reproduces the model's forward pass exactly;
* the residual stream's start (``blocks.0.hook_resid_pre``: token embeddings, plus positional ones
  where the model has them) as the input nodes, one per position.

No features are read at the BOS position (the transcoder never saw it in training): the error
node there holds the MLP's whole output.

The *direct effect* of a source node on a target node is what the source writes into the target's
value along paths through the frozen attention and the residual stream alone, every other node
held fixed. A feature's value is its pre-activation (equal to its activation, as it is active); a
target's is a demeaned logit (or a projection on a direction) at the last position. For a feature
``s`` of layer ``l`` at position ``p``: ``a_s * sum_{l' >= l} W_dec[l -> l'][s] . dv/dw_{l'}[p]``,
with ``w_{l'}`` the write at ``blocks.{l'}.hook_mlp_out``; an error node writes its vector, a token
node its embedding. Gradients come from one forward pass with the prompt repeated ``batch`` times
and one backward pass per ``batch`` target nodes, each injecting one target per row.

As the frozen model is affine in its sources, every node's value is a constant (its *bias*: what
it reads with every source at zero) plus the sum of its direct effects: [`completeness_error`][workbench.clt.attribution.completeness_error]
measures this on any graph, and ``tests/clt/test_graph.py`` holds each edge to a finite
difference on the frozen model).

With more active features than ``max_features``, features are visited in order of their
influence on the targets so far (circuit-tracer's greedy order); the rest stay out of the graph,
and the share of direct effect they held is recorded as ``unexplained``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.clt.graph import TARGET, Graph, TargetInfo, normalized
from workbench.clt.transcoder import CrossLayerTranscoder, check_fits, mlp_in_hook, mlp_out_hook
from workbench.errors import WorkbenchError
from workbench.lens.readout import wide

START = "blocks.0.hook_resid_pre"


def frozen_hook(name: str) -> bool:
    """Whether the local replacement model freezes the hook ``name``: patterns and the residual
    norms' scales. A q/k norm's scale (Gemma 3, Qwen 3) only feeds the pattern, frozen already.
    """
    if name.endswith("hook_pattern"):
        return True
    return name.endswith("hook_scale") and ".attn." not in name


@dataclass
class Target:
    """What a graph explains: ``vector . x + offset`` at the last position, ``x`` the input of the
    unembedding (after the final norm). A demeaned logit has ``vector = W_U[:, token] - mean_k
    W_U[:, k]`` (and the demeaned bias as offset).
    """

    label: str
    vector: torch.Tensor  # [d_model]
    token: int = -1  # the logit's token; -1 for a direction
    weight: float = 1.0  # its weight in influence: a logit's probability


def logit_targets(model, logits: torch.Tensor, probability: float = 0.95, max_logits: int = 5) -> list[Target]:
    """The most likely next tokens that together cover ``probability`` (at most ``max_logits``),
    from the last position's ``logits [d_vocab]``.
    """
    probs = torch.softmax(logits.double(), -1)
    top = torch.topk(probs, min(max_logits, len(probs)))
    n = int(torch.searchsorted(top.values.cumsum(0), torch.tensor(probability, dtype=torch.float64))) + 1
    return [logit_target(model, int(t), float(p)) for t, p in zip(top.indices[:n], top.values[:n])]


def logit_target(model, token: int, weight: float = 1.0) -> Target:
    """The demeaned logit of one token id (checked against the vocabulary)."""
    if not 0 <= token < model.cfg.d_vocab:
        raise WorkbenchError(f"Token id {token} is outside the model's vocabulary (0..{model.cfg.d_vocab - 1}).")
    W_U = model.W_U.detach()
    return Target(_token_label(model, token), W_U[:, token] - W_U.mean(1), token, weight)


def token_target(model, text: str) -> Target:
    """The logit of ``text``, which must be one token of the model's vocabulary."""
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise WorkbenchError(
            f"Target {text!r} is {len(ids)} tokens in this model's vocabulary ({pieces}), not one; "
            "give a single token (often with its leading space, e.g. ' dog')."
        )
    return logit_target(model, ids[0])


def direction_target(vector: torch.Tensor, label: str) -> Target:
    """A direction in the unembedding's input space (e.g. a language direction)."""
    return Target(label, vector.detach().float())


def mean_unembedding(model, tokens: list[int], label: str) -> Target:
    """A language (or any token set) direction: the mean unembedding of ``tokens`` minus the mean
    over the whole vocabulary.
    """
    if not tokens:
        raise WorkbenchError(f"No tokens for the direction {label!r}: the vocabulary has none of that kind.")
    W_U = model.W_U.detach()
    return direction_target(W_U[:, tokens].mean(1) - W_U.mean(1), label)


def _token_label(model, token: int) -> str:
    return repr(model.tokenizer.decode([token])) if model.tokenizer is not None else str(token)


@dataclass
class PromptState:
    """The model's pass over one prompt: what the local replacement model holds fixed and reads."""

    tokens: torch.Tensor  # [pos], BOS first
    frozen: dict[str, torch.Tensor]  # hook name -> its value (patterns, norm scales), batch 1
    start: torch.Tensor  # [pos, d]: the residual stream's start
    acts: torch.Tensor  # [L, pos, F]: feature activations (none at BOS)
    errors: torch.Tensor  # [L, pos, d]: MLP output minus the transcoder's reconstruction
    writes: torch.Tensor  # [L, pos, d]: the true MLP outputs (reconstruction + error)
    mlp_in: torch.Tensor  # [L, pos, d]: the transcoder's inputs
    final: torch.Tensor  # [pos, d]: the unembedding's input
    logits: torch.Tensor  # [d_vocab]: at the last position


@torch.no_grad()
def read_prompt(model, clt: CrossLayerTranscoder, tokens: torch.Tensor) -> PromptState:
    """One pass of the model over ``tokens``, with the transcoder's features and error nodes."""
    L = clt.config.n_layers
    wanted = (
        {START, f"blocks.{L - 1}.hook_resid_post"}
        | {mlp_in_hook(l) for l in range(L)}
        | {mlp_out_hook(l) for l in range(L)}
    )
    logits, cache = model.run_with_cache(
        tokens[None], names_filter=lambda n: n in wanted or frozen_hook(n), device=model.cfg.device
    )
    mlp_in = wide(torch.stack([cache[mlp_in_hook(l)][0] for l in range(L)]))
    writes = torch.stack([cache[mlp_out_hook(l)][0] for l in range(L)])  # the model's dtype: patched back in
    acts = torch.stack([clt.encode_layer(mlp_in[l], l) for l in range(L)])
    acts[:, 0] = 0  # no features at BOS
    recon = torch.stack([clt.decode_layer(list(acts[: l + 1]), l) for l in range(L)])
    final = wide(model.ln_final(cache[f"blocks.{L - 1}.hook_resid_post"])[0])
    frozen = {name: value for name, value in cache.items() if frozen_hook(name)}
    return PromptState(
        tokens, frozen, cache[START][0], acts, wide(writes) - recon, writes, mlp_in, final, wide(logits[0, -1])
    )


@contextmanager
def frozen_model(
    model, state: PromptState, start: torch.Tensor, writes: list[torch.Tensor], mlp_in: list
) -> Iterator[None]:
    """The local replacement model: patterns and scales from ``state``, the residual stream's
    start set to ``start [B, pos, d]``, layer ``l``'s MLP output set to ``writes[l]``. Each
    layer's MLP input is appended to ``mlp_in`` as it is computed. Hooks are removed on exit.
    """
    B = start.shape[0]

    def fixed(value: torch.Tensor):
        return lambda x, hook: value.to(x.device).expand(B, *value.shape[1:])

    def record(x, hook):
        mlp_in.append(x)

    hooks = [(name, fixed(value)) for name, value in state.frozen.items()]
    hooks += [(START, lambda x, hook: start.to(x))]  # float32 sources enter a half-precision model cast
    hooks += [(mlp_out_hook(l), (lambda w: lambda x, hook: w.to(x))(w)) for l, w in enumerate(writes)]
    hooks += [(mlp_in_hook(l), record) for l in range(len(writes))]
    with model.hooks(fwd_hooks=hooks):
        yield


def frozen_forward(
    model, state: PromptState, start: torch.Tensor, writes: list[torch.Tensor]
) -> tuple[list, torch.Tensor]:
    """Run the local replacement model: ``(MLP inputs per layer [B, pos, d], unembedding input [B, pos, d])``."""
    mlp_in: list[torch.Tensor] = []
    B, L = start.shape[0], len(writes)
    with frozen_model(model, state, start, writes, mlp_in):
        resid = model(state.tokens[None].expand(B, -1), stop_at_layer=L)
        final = model.ln_final(resid)
    return mlp_in, final


def target_value(state: PromptState, target: Target) -> float:
    """A target's value on the prompt (without the logit's bias: that is part of its bias)."""
    return float(state.final[-1] @ target.vector.to(state.final))


def check_hooked(model) -> None:
    """Refuse a model loaded through TransformerBridge: the frozen replacement model reads
    HookedTransformer's norm scales and blocks.
    """
    from transformer_lens import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise WorkbenchError(
            f"Attribution graphs need a HookedTransformer; {model.cfg.model_name} is loaded through "
            "TransformerBridge (its architecture has no HookedTransformer converter). Run the other "
            "analyses on it; `workbench models` lists the families that convert."
        )


def check_prompt(model, clt: CrossLayerTranscoder, tokens: torch.Tensor) -> None:
    """Refuse a bridged model, an empty or over-long prompt, and a transcoder of another shape."""
    check_hooked(model)
    check_fits(clt, model)
    if tokens.dim() != 1 or len(tokens) < 2:
        raise WorkbenchError("The prompt is empty: give some text to attribute (it gets a BOS token in front).")
    if len(tokens) > model.cfg.n_ctx:
        raise WorkbenchError(
            f"The prompt is {len(tokens)} tokens; the model's context is {model.cfg.n_ctx}. Shorten it."
        )


class _Sources:
    """The source columns of a prompt: every active feature, the error nodes, the token nodes;
    turns the gradients at the write sites into direct effects on each column.
    """

    def __init__(self, clt: CrossLayerTranscoder, state: PromptState):
        self.state = state
        self.index = state.acts.nonzero()  # [n_active, 3]: layer, position, feature (layer-major)
        self.values = state.acts[tuple(self.index.T)]
        L, pos = state.acts.shape[:2]
        self.n_active, self.L, self.pos = len(self.index), L, pos
        self.by_layer = []  # per source layer: (columns, positions, decoders [targets, n, d] in model units)
        for layer in range(L):
            cols = (self.index[:, 0] == layer).nonzero()[:, 0]
            feats = self.index[cols, 2]
            dec = torch.stack(
                [clt.W_dec[layer][k][feats] / clt.out_scale[layer + k] for k in range(clt.config.targets(layer))]
            )
            self.by_layer.append((cols, self.index[cols, 1], dec.detach()))

    @property
    def n_columns(self) -> int:
        return self.n_active + (self.L + 1) * self.pos

    def effects(self, g_start: torch.Tensor, g_writes: list[torch.Tensor]) -> torch.Tensor:
        """``[B, n_columns]`` direct effects from gradients at the start ``[B, pos, d]`` and writes
        (summed in float32 whatever the model's dtype).
        """
        g_start, g_writes = wide(g_start), [wide(g) for g in g_writes]
        B = g_start.shape[0]
        out = g_start.new_zeros(B, self.n_columns)
        for layer, (cols, positions, dec) in enumerate(self.by_layer):
            if len(cols) == 0:
                continue
            pick = torch.arange(len(cols), device=dec.device)
            total = sum((g_writes[layer + k] @ dec[k].T)[:, positions, pick] for k in range(dec.shape[0]))  # [B, n]
            out[:, cols] = total * self.values[cols]
        errors = torch.stack([(g_writes[l] * self.state.errors[l]).sum(-1) for l in range(self.L)], 1)  # [B, L, pos]
        out[:, self.n_active : self.n_active + self.L * self.pos] = errors.reshape(B, -1)
        out[:, self.n_active + self.L * self.pos :] = (g_start * wide(self.state.start)).sum(-1)
        return out


def attribute(
    model,
    clt: CrossLayerTranscoder,
    tokens: torch.Tensor,
    targets: list[Target] | None = None,
    *,
    probability: float = 0.95,
    max_logits: int = 5,
    max_features: int | None = None,
    batch: int = 32,
    prompt: str = "",
    show_progress: bool = False,
) -> Graph:
    """The attribution graph of ``tokens`` (BOS first) for ``targets`` (default: the top logits
    covering ``probability``, at most ``max_logits``).
    """
    check_prompt(model, clt, tokens)
    with torch.no_grad():
        state = read_prompt(model, clt, tokens.to(model.cfg.device))
    targets = targets or logit_targets(model, state.logits, probability, max_logits)
    sources = _Sources(clt, state)
    limit = sources.n_active if max_features is None else min(max_features, sources.n_active)
    rows = np.zeros((len(targets) + limit, sources.n_columns), np.float32)
    row_node = np.full(len(rows), -1)  # the column of each feature row (-1: a target row)
    grad = _Gradients(model, clt, state, batch)
    for i in range(0, len(targets), batch):
        chunk = targets[i : i + batch]
        rows[i : i + len(chunk)] = grad.rows([(None, t) for t in chunk], sources)
    visited = np.zeros(sources.n_active, bool)
    done = len(targets)
    with tqdm(total=limit, desc="attribution", unit=" features", disable=not show_progress) as bar:
        while done < len(rows):
            if limit == sources.n_active:  # every feature gets visited: the order does not matter
                order = np.nonzero(~visited)[0]
            else:
                order = _by_influence(
                    rows[:done], row_node[:done], np.array([t.weight for t in targets]), sources.n_active
                )
            pick = [int(j) for j in order if not visited[j]][: min(batch, len(rows) - done)]
            rows[done : done + len(pick)] = grad.rows([(j, None) for j in pick], sources)
            row_node[done : done + len(pick)] = pick
            visited[pick] = True
            done += len(pick)
            bar.update(len(pick))
    return _graph(model, clt, state, sources, targets, rows, row_node, visited, prompt)


class _Gradients:
    """One frozen forward pass with the prompt repeated ``batch`` times, kept for the backward passes."""

    def __init__(self, model, clt: CrossLayerTranscoder, state: PromptState, batch: int):
        self.clt, self.state, self.batch = clt, state, batch
        L = clt.config.n_layers
        self.start = state.start[None].expand(batch, -1, -1).clone().requires_grad_(True)
        self.writes = [state.writes[l][None].expand(batch, -1, -1).clone().requires_grad_(True) for l in range(L)]
        with torch.enable_grad():
            self.mlp_in, self.final = frozen_forward(model, state, self.start, self.writes)

    def rows(self, nodes: list[tuple[int | None, Target | None]], sources: _Sources) -> np.ndarray:
        """Direct effects into each of ``nodes`` (a feature's column, or a target), one batch row each."""
        clt = self.clt
        outputs: dict[int, torch.Tensor] = {}  # layer (or -1: the final input) -> gradient to inject
        for b, (column, target) in enumerate(nodes):
            if target is not None:
                g = outputs.setdefault(-1, torch.zeros_like(self.final))
                g[b, -1] = target.vector.to(g)
            else:
                layer, pos, feature = (int(x) for x in sources.index[column])
                g = outputs.setdefault(layer, torch.zeros_like(self.mlp_in[layer]))
                g[b, pos] = (clt.W_enc[layer, :, feature].detach() * clt.in_scale[layer]).to(g.device)
        tensors = [self.final if k == -1 else self.mlp_in[k] for k in outputs]
        with torch.enable_grad():
            grads = torch.autograd.grad(
                tensors, [self.start, *self.writes], list(outputs.values()), retain_graph=True, allow_unused=True
            )
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, [self.start, *self.writes])]
        with torch.no_grad():
            return sources.effects(grads[0], grads[1:])[: len(nodes)].float().cpu().numpy()


def _by_influence(rows: np.ndarray, row_node: np.ndarray, weights: np.ndarray, n_active: int) -> list[int]:
    """Active features (columns) in order of their influence on the targets through the rows so far."""
    A = normalized(rows)
    current = np.zeros(len(rows))
    current[row_node < 0] = weights
    total = np.zeros(rows.shape[1])
    for _ in range(len(rows) + 1):
        spread = current @ A
        total += spread
        current = np.where(row_node >= 0, spread[np.maximum(row_node, 0)], 0.0)
        if not current.any():
            break
    return list(np.argsort(-total[:n_active], kind="stable"))


@torch.no_grad()
def completeness_error(model, clt: CrossLayerTranscoder, graph: Graph, targets: list[Target] | None = None) -> float:
    """How far ``graph`` is from complete: the largest ``|bias + sum of direct effects - value|``
    over its feature and target nodes, relative to the largest value. Values and biases are read
    on the frozen model (a bias: the node's value with every source at zero, the transcoder
    writing its decoder bias alone). ``targets``: those the graph was built for (default: its
    logits). Only a graph that visited every active feature is complete.
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
    model, clt, state: PromptState, graph: Graph, targets: list[Target], start: torch.Tensor, writes: list[torch.Tensor]
) -> np.ndarray:
    """Every feature's pre-activation and every target's value on the frozen model, from ``start`` and ``writes``."""
    mlp_in, final = frozen_forward(model, state, start, writes)
    pre = [clt.layer_pre_activations(x[0], layer) for layer, x in enumerate(mlp_in)]  # [pos, F] per layer
    features = [pre[layer][pos, feature] for layer, pos, feature in graph.features]
    values = [final[0, -1] @ t.vector.to(final) for t in targets]
    return torch.stack(features + values).double().cpu().numpy()


def _graph(
    model,
    clt,
    state: PromptState,
    sources: _Sources,
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
    }
    return Graph(
        prompt,
        tokens,
        [model.tokenizer.decode([t]) if model.tokenizer is not None else str(t) for t in tokens],
        clt.config.n_layers,
        sources.index[selected].cpu().numpy(),
        sources.values[selected].cpu().numpy(),
        state.errors.norm(dim=-1).cpu().numpy(),
        info,
        adjacency,
        meta,
    )


__all__ = [
    "PromptState",
    "Target",
    "attribute",
    "check_hooked",
    "check_prompt",
    "completeness_error",
    "direction_target",
    "frozen_forward",
    "frozen_hook",
    "frozen_model",
    "logit_target",
    "logit_targets",
    "mean_unembedding",
    "read_prompt",
    "target_value",
    "token_target",
]
