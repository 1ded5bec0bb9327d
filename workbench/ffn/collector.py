"""Collecting FFN detectors and combinators: hooks that stream a language's rows into sums.

Each FFN is read as two sublayers (docs/methods.md §9; Bhattacharya & Bojar, arXiv 2404.13855):
the *detectors* are the first sublayer's activations (``blocks.{l}.mlp.hook_post``: after the
activation function, and for gated MLPs after the gate; ``d_mlp`` values per token) and the
*combinators* the second sublayer's output (``hook_post @ W_out + b_out``: ``d_model`` values,
before any post-FFN norm).

Collection streams: per language, per layer and sublayer, a forward pass adds running sums to a
[`SublayerSums`][workbench.ffn.summary.SublayerSums] and, optionally, each document's mean vector
for representational similarity; no token's activations are kept.
[`summarise`][workbench.ffn.collector.summarise] runs a language's documents through the
[`Collector`][workbench.ffn.collector.Collector] and returns its
[`FFNSummary`][workbench.ffn.summary.FFNSummary].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS, counted_positions, iter_batches, pad_id_of
from workbench.ffn.metrics import row_entropy
from workbench.ffn.summary import SUBLAYERS, FFNSummary, SublayerSums
from workbench.models.model import Model
from workbench.runs.distributed import all_gather, shard

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint

POSITIONS: tuple[str, ...] = ("all", "last")
"""Which positions of a document count as rows: every counted one, or the last."""
GELU_TOLERANCE = 1e-2
"""|activation| at or below this counts as zero for GELU/SiLU-like activations."""


def default_tolerance(model: Model) -> float:
    """The near-zero tolerance for the model's activation function.

    0 for ReLU (exact zeros exist), [`GELU_TOLERANCE`][workbench.ffn.collector.GELU_TOLERANCE]
    for smooth activations.
    """
    return 0.0 if str(getattr(model.cfg, "act_fn", "")).lower() == "relu" else GELU_TOLERANCE


class Collector:
    """Hooks that add one batch's detector and combinator rows to per-sublayer sums.

    With ``pooled`` they also keep each document's mean vector.

    Args:
        model: The model.
        tolerance: ``|activation|`` at or below this counts as zero.
        positions: Which positions count as rows (one of
            [`POSITIONS`][workbench.ffn.collector.POSITIONS]).
        pooled: Keep each document's mean vector per layer.

    Raises:
        ValueError: For unknown ``positions``.
    """

    def __init__(self, model: Model, tolerance: float, positions: str = "all", pooled: bool = False):
        if positions not in POSITIONS:
            raise ValueError(f"Unknown positions {positions!r}; choose from {', '.join(POSITIONS)}.")
        self.model, self.tolerance, self.positions = model, tolerance, positions
        n_layers = len(model.blocks)
        d_mlp, d_model = model.blocks[0].mlp.W_out.shape
        self.sums = {
            "detector": SublayerSums.empty(n_layers, d_mlp),
            "combinator": SublayerSums.empty(n_layers, d_model),
        }
        self.pooled: dict[str, list[np.ndarray]] | None = {s: [] for s in SUBLAYERS} if pooled else None
        self._batch_pooled: dict[str, dict[int, np.ndarray]] = {}
        self.rows_weight: torch.Tensor | None = None  # [b, pos]: > 0 where a position is a row

    def hooks(self) -> list[tuple[str, Callable[..., None]]]:
        """The forward hooks, one per layer's ``mlp.hook_post``."""
        return [(f"blocks.{layer}.mlp.hook_post", self._hook(layer)) for layer in range(len(self.model.blocks))]

    def _hook(self, layer: int) -> Callable[..., None]:
        def hook(post: torch.Tensor, hook: HookPoint) -> None:
            mlp = self.model.blocks[layer].mlp
            combined = post @ mlp.W_out
            b_out = getattr(mlp, "b_out", None)
            if b_out is not None:
                combined = combined + b_out
            for name, acts in (("detector", post), ("combinator", combined)):
                self._add(name, layer, acts.detach().float())

        return hook

    def _add(self, name: str, layer: int, acts: torch.Tensor) -> None:
        if self.rows_weight is None:
            raise RuntimeError("The hooks add rows only inside Collector.run.")
        weight = self.rows_weight.to(acts.device)  # the layer's device, when layers are split over GPUs
        sums, rows = self.sums[name], acts[weight > 0]
        sums.near_zero[layer] += (rows.abs() <= self.tolerance).sum(0).cpu().numpy()
        sums.total[layer] += rows.double().sum(0).cpu().numpy()
        sums.entropy[layer] += float(row_entropy(rows).sum())
        if self.pooled is not None:
            mean = torch.einsum("bpu,bp->bu", acts, weight) / weight.sum(1, keepdim=True).clamp_min(1)
            self._batch_pooled.setdefault(name, {})[layer] = mean.cpu().numpy()

    def run(
        self, tokens: Int[torch.Tensor, "batch pos"], mask: Int[torch.Tensor, "batch pos"], include_bos: bool
    ) -> None:
        """Run one padded batch through the model, adding its rows to the sums.

        Args:
            tokens: The batch's token ids.
            mask: 1 on real tokens, 0 on padding.
            include_bos: Count the BOS position too.
        """
        counted = counted_positions(mask, include_bos).to(tokens.device)
        self.rows_weight = counted if self.positions == "all" else _last_only(counted)
        self._batch_pooled = {}
        with torch.no_grad():
            self.model.run_with_hooks(tokens, fwd_hooks=list(self.hooks()), stop_at_layer=len(self.model.blocks))
        n_rows = int((self.rows_weight > 0).sum())
        for sums in self.sums.values():
            sums.rows += n_rows
        if self.pooled is not None:
            for name, per_layer in self._batch_pooled.items():
                layers = [per_layer[layer] for layer in range(len(self.model.blocks))]
                self.pooled[name].append(np.stack(layers, axis=1))  # [b, layers, units]


def _last_only(weights: torch.Tensor) -> torch.Tensor:
    """A 0/1 ``[b, pos]`` mask of each document's last counted position."""
    out = torch.zeros_like(weights)
    last = (weights > 0).long().cumsum(1).argmax(1)
    out[torch.arange(weights.shape[0], device=weights.device), last] = 1
    return out


def summarise(
    model: Model,
    language: str,
    tokens: Sequence[Int[torch.Tensor, " pos"]],
    ids: Sequence[str],
    tolerance: float | None = None,
    positions: str = "all",
    include_bos: bool = False,
    pooled: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> FFNSummary:
    """Stream one language's documents through the model and summarise its FFNs.

    Under ``torchrun`` each process takes its share of the documents; the sums add up and the
    per-document vectors are gathered back into document order.

    Args:
        model: The model.
        language: The documents' language.
        tokens: Each document's token ids, BOS first.
        ids: Their ids.
        tolerance: ``|activation|`` at or below this counts as zero; by default
            [`default_tolerance`][workbench.ffn.collector.default_tolerance].
        positions: Which positions count as rows: ``all`` or ``last``.
        include_bos: Count the BOS position too.
        pooled: Also keep each document's mean vector per layer (for layer similarity).
        batch_tokens: Tokens per batch (padding included).

    Returns:
        The language's summary.
    """
    tol = default_tolerance(model) if tolerance is None else tolerance
    collector = Collector(model, tol, positions, pooled)
    device = next(model.parameters()).device
    order: list[int] = []
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, device, shard(len(tokens))):
        collector.run(batch.tokens, batch.mask, include_bos)
        order += batch.index
    for sums in collector.sums.values():
        sums.merge()
    stacked = {}
    if collector.pooled is not None:
        local = {name: np.concatenate(parts) for name, parts in collector.pooled.items() if parts}
        every = [(o, arrays) for o, arrays in all_gather((order, local)) if o]  # processes with documents
        if every:
            inverse = np.argsort(np.concatenate([o for o, _ in every]))
            stacked = {name: np.concatenate([arrays[name] for _, arrays in every])[inverse] for name in every[0][1]}
    return FFNSummary(language, list(ids), positions, tol, include_bos, collector.sums, stacked)
