"""Direct effects in the local replacement model: the edges of an attribution graph.

The *direct effect* of a source node on a target node is what the source writes into the target's
value along paths through the frozen attention and the residual stream alone, every other node
held fixed ([`workbench.clt.graphs.local_replacement`][workbench.clt.graphs.local_replacement]). A feature's value
is its pre-activation (equal to its activation, as it is active); a target's is a demeaned logit (or
a projection on a direction) at the last position. For a feature ``s`` of layer ``l`` at position
``p``: ``a_s * sum_{l' >= l} W_dec[l -> l'][s] . dv/dw_{l'}[p]``, with ``w_{l'}`` the write at
``blocks.{l'}.hook_mlp_out``; an error node writes its vector, a token node its embedding.
A skip transcoder's skip is no source: it is a linear path of the frozen model (the MLP input
through the frozen norm, times ``W_skip``), so the gradients at the writes already pass through
the skips of later layers, as they pass through attention's values.
Gradients come from one forward pass with the prompt repeated ``batch`` times
([`Gradients`][workbench.clt.graphs.direct_effects.Gradients]) and one backward pass per ``batch`` target
nodes, each injecting one target per row; [`Sources`][workbench.clt.graphs.direct_effects.Sources] turns
them into effects per source column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float

from workbench.clt.graphs.graph import normalized
from workbench.clt.graphs.local_replacement import PromptState, frozen_forward
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.lens.readout import wide

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


class Sources:
    """The source columns of a prompt: every active feature, the error nodes, the token nodes.

    Turns the gradients at the write sites into direct effects on each column.

    Args:
        clt: The transcoder.
        state: The model's pass over the prompt.
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
        """Active features, then error nodes (layer-major), then token nodes."""
        return self.n_active + (self.L + 1) * self.pos

    def effects(
        self,
        g_start: Float[torch.Tensor, "batch pos d_model"],
        g_writes: list[Float[torch.Tensor, "batch pos d_model"]],
    ) -> Float[torch.Tensor, "batch column"]:
        """Direct effects on every column from gradients at the start and at the writes.

        Summed in float32 whatever the model's dtype.
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


class Gradients:
    """One frozen forward pass with the prompt repeated ``batch`` times, kept for the backward passes.

    Args:
        model: The model ``state`` was read from.
        clt: The transcoder.
        state: The model's pass over the prompt.
        batch: The nodes one backward pass serves.
    """

    def __init__(self, model: HookedTransformer, clt: CrossLayerTranscoder, state: PromptState, batch: int):
        self.clt, self.state, self.batch = clt, state, batch
        L = clt.config.n_layers
        self.start = state.start[None].expand(batch, -1, -1).clone().requires_grad_(True)
        self.writes = [state.writes[l][None].expand(batch, -1, -1).clone().requires_grad_(True) for l in range(L)]
        with torch.enable_grad():
            self.mlp_in, self.final = frozen_forward(model, state, self.start, self.writes)

    def rows(
        self, nodes: list[tuple[int | None, Float[torch.Tensor, " d_model"] | None]], sources: Sources
    ) -> np.ndarray:
        """Direct effects into each of ``nodes``, one batch row each.

        A node is a feature's column, or a target's vector (``(None, vector)``).

        Returns:
            ``[len(nodes), n_columns]`` float32.
        """
        clt = self.clt
        outputs: dict[int, torch.Tensor] = {}  # layer (or -1: the final input) -> gradient to inject
        for b, (column, target) in enumerate(nodes):
            if target is not None:
                g = outputs.setdefault(-1, torch.zeros_like(self.final))
                g[b, -1] = target.to(g)
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


def by_influence(rows: np.ndarray, row_node: np.ndarray, weights: np.ndarray, n_active: int) -> list[int]:
    """Active features (columns) in order of their influence on the targets through the rows so far.

    Args:
        rows: The direct effects into each node with a row so far ``[rows, columns]``.
        row_node: Each row's feature column (-1: a target's row).
        weights: The targets' weights, in the order of their rows.
        n_active: The active features (the first columns).
    """
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


__all__ = ["Gradients", "Sources", "by_influence"]
