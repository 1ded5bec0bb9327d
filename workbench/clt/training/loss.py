"""The training loss of a cross-layer transcoder.

Squared error summed over ``d_model`` and layers, mean over tokens (the reconstruction includes a
skip transcoder's skip); plus ``lambda * sum_f tanh(c * a_f * ||W_dec,f||)`` with the norm over all
of ``f``'s decoders (concatenated over target layers; ``lambda`` one number, or one per covered
layer); plus a small penalty ``sum relu(theta - z) * ||W_dec,f||`` that pulls dead features'
pre-activations up to their threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from jaxtyping import Float

from workbench.clt.jumprelu import jump_relu
from workbench.clt.transcoder import CrossLayerTranscoder

SPARSITY_C = 4.0
"""The ``c`` in the sparsity term ``tanh(c * a_f * ||W_dec,f||)``."""
DEAD_PENALTY = 1e-4
"""The default weight of the pull on dead features' pre-activations."""


@dataclass
class LossParts:
    """The loss and its terms (floats for logging; ``total`` keeps its graph)."""

    total: torch.Tensor
    mse: float
    sparsity: float
    dead: float
    l0: float  # mean active features per token, all layers together
    l0_layers: list[float] = field(default_factory=list)  # per covered layer


def clt_loss(
    clt: CrossLayerTranscoder,
    x: Float[torch.Tensor, "row layer d_model"],
    target: Float[torch.Tensor, "row layer d_model"],
    sparsity: float | Float[torch.Tensor, " covered"],
    c: float = SPARSITY_C,
    dead: float = DEAD_PENALTY,
    terms: Callable[..., tuple[torch.Tensor, ...]] | None = None,
) -> LossParts:
    """The training loss on MLP inputs ``x`` and outputs ``target`` (model units).

    The squared error is taken in the scaled units, so every layer weighs the same.

    Args:
        clt: The transcoder.
        x: MLP inputs of every layer, or of the covered ones only.
        target: MLP outputs, likewise.
        sparsity: ``lambda``, the weight of the tanh sparsity term: one, or one per covered layer.
        c: The ``c`` inside the tanh.
        dead: The weight of the pull on dead features' pre-activations.
        terms: [`loss_terms`][workbench.clt.training.loss.loss_terms] (the default) or a compiled copy of it.
    """
    if x.shape[-2] != len(clt.config.covered):
        covered = list(clt.config.covered)
        x, target = x[:, covered], target[:, covered]
    weight = sparsity.to(x) if isinstance(sparsity, torch.Tensor) else torch.tensor(float(sparsity))
    out = (terms or loss_terms)(clt, x, target, weight, c, dead)
    mse, sparse, dead_term, l0 = (float(t) for t in out[1:5])
    return LossParts(out[0], mse, sparse, dead_term, l0, out[5].tolist())


def loss_terms(
    clt: CrossLayerTranscoder,
    x: Float[torch.Tensor, "row covered d_model"],
    target: Float[torch.Tensor, "row covered d_model"],
    sparsity: Float[torch.Tensor, ""] | Float[torch.Tensor, " covered"],
    c: float = SPARSITY_C,
    dead: float = DEAD_PENALTY,
) -> tuple[torch.Tensor, ...]:
    """The loss's terms as tensors ``(total, mse, sparsity, dead, l0, l0 per layer)``, from the covered layers' rows.

    [`clt_loss`][workbench.clt.training.loss.clt_loss] without leaving the graph, so it compiles whole.
    """
    idx = clt.index
    pre = clt.compact_pre_activations(x)
    threshold = clt.threshold[idx]
    acts = jump_relu(pre, threshold, clt.config.bandwidth)
    recon = clt.compact_decode(acts)
    if clt.W_skip is not None:
        recon = recon + clt.compact_skip(x)
    error = (recon - target) * clt.out_scale[idx, None]
    mse = error.pow(2).sum(dim=(-1, -2)).mean()
    norms = clt.decoder_norms(clt.config.covered)
    sparse_layers = torch.tanh(c * acts * norms).sum(dim=-1).mean(0)  # [covered]
    dead_term = (torch.relu(threshold - pre) * norms).sum(dim=(-1, -2)).mean()
    total = mse + (sparsity * sparse_layers).sum() + dead * dead_term
    l0_layers = (acts > 0).sum(dim=-1).float().mean(0)
    return total, mse.detach(), sparse_layers.sum().detach(), dead_term.detach(), l0_layers.sum(), l0_layers


__all__ = ["DEAD_PENALTY", "SPARSITY_C", "LossParts", "clt_loss", "loss_terms"]
