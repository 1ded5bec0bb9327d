"""Switching neurons off with hooks: the same output as zeroing their parameters, no weight edited.

A [`NeuronSet`][workbench.neurons.sets.NeuronSet] becomes forward hooks that multiply activations by
a 0/1 mask, at the point where the neuron's parameters act:

=============  =============================  ===============================================
structure      hook                           equivalent parameter edit
=============  =============================  ===============================================
``ffn``        ``blocks.{l}.mlp.hook_post``   column k of W_in / W_gate and b_in[k], or row k of W_out
``attn_q``     ``blocks.{l}.attn.hook_q``     column (head, k) of W_Q and b_Q[head, k]
``attn_k``     ``blocks.{l}.attn.hook_k``     column (kv_head, k) of W_K and b_K (grouped-query: shared)
``attn_v``     ``blocks.{l}.attn.hook_v``     column (kv_head, k) of W_V and b_V
``attn_o``     ``blocks.{l}.attn.hook_z``     row (head, k) of W_O
=============  =============================  ===============================================

``hook_q``/``hook_k`` are the projections before any q/k norm and rotary embedding, so masking
there is exactly zeroing W_Q's (W_K's) column: the neuron PLND scores
([`workbench.neurons.qk_importance`][workbench.neurons.qk_importance]). Hooks are removed when the
``with`` block ends, also on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float

from workbench.models.model import Model
from workbench.neurons.sets import NeuronDims, NeuronSet, structure_size

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint

HOOK_OF: dict[str, str] = {
    "ffn": "mlp.hook_post",
    "attn_q": "attn.hook_q",
    "attn_k": "attn.hook_k",
    "attn_v": "attn.hook_v",
    "attn_o": "attn.hook_z",
}
"""The hook (within ``blocks.{l}``) where each structure's mask acts."""

Hook = Callable[..., torch.Tensor | None]
"""A TransformerLens forward hook: ``hook(activation, hook)``, returning a replacement or None."""


def _mask_hook(keep: Float[torch.Tensor, "*mask"]) -> Hook:
    """Multiply the activation by ``keep``.

    ``keep`` is ``[d_mlp]`` or ``[head, d_head]``, or per batch row ``[batch, 1, d_mlp]`` /
    ``[batch, 1, head, d_head]`` (broadcast over positions).
    """

    def hook(activation: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        return activation * keep.to(activation.device, activation.dtype)

    return hook


def _keep_masks(dims: NeuronDims, neurons: NeuronSet) -> dict[tuple[str, int], Float[torch.Tensor, "*mask"]]:
    """``(structure, layer) -> keep`` (1 = on, 0 = off) where ``neurons`` switches something off.

    Each ``keep`` is shaped like the hooked activation's last axes: ``[d_mlp]`` or ``[head, d_head]``.
    """
    out = {}
    for structure, masks in neurons.to_mask(dims).items():
        for layer, mask in enumerate(masks):
            if mask.any():
                keep = torch.from_numpy(~mask).float()
                out[structure, layer] = keep if structure == "ffn" else keep.reshape(-1, dims.d_head)
    return out


def mask_hooks(model: Model, neurons: NeuronSet | Sequence[NeuronSet | None]) -> list[tuple[str, Hook]]:
    """Forward hooks that switch off exactly ``neurons`` (one hook per layer and structure).

    Args:
        model: The model the hooks are for (its dimensions and device).
        neurons: The set to switch off; or a sequence, one set per batch row (``None`` or empty:
            nothing off in that row), so that differently masked runs can share one batch.

    Returns:
        ``(hook name, hook)`` pairs for ``model.hooks`` or ``run_with_hooks``, by layer.
    """
    dims = NeuronDims.of(model)
    device = next(model.parameters()).device
    if isinstance(neurons, NeuronSet):
        keeps = _keep_masks(dims, neurons)
    else:
        rows = [_keep_masks(dims, n) if n is not None else {} for n in neurons]
        keeps = {}
        for key in {k for row in rows for k in row}:
            structure, _ = key
            shape = (dims.d_mlp,) if structure == "ffn" else (-1, dims.d_head)
            ones = torch.ones(structure_size(dims, structure)).reshape(shape)
            keeps[key] = torch.stack([row.get(key, ones) for row in rows]).unsqueeze(1)
    return [
        (f"blocks.{layer}.{HOOK_OF[structure]}", _mask_hook(keep.to(device)))
        for (structure, layer), keep in sorted(keeps.items(), key=lambda item: (item[0][1], item[0][0]))
    ]


@contextmanager
def switched_off(model: Model, neurons: NeuronSet | Sequence[NeuronSet | None] | None) -> Iterator[None]:
    """Run the ``with`` block with ``neurons`` switched off.

    Args:
        model: The model to hook.
        neurons: The set to switch off (nothing changes for ``None`` or an empty set); a sequence
            of sets gives each batch row its own.

    Yields:
        Nothing: the hooks are in place for the block, and removed after it.
    """
    hooks = [] if neurons is None else mask_hooks(model, neurons)
    if not hooks:
        yield
        return
    with model.hooks(fwd_hooks=list(hooks)):  # a fresh list: TransformerLens types it wider
        yield
