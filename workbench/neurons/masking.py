"""Switching neurons off with hooks: the same output as zeroing their parameters, no weight edited.

A [`NeuronSet`][workbench.neurons.sets.NeuronSet] becomes forward hooks that multiply activations by a 0/1
mask, at the point where the neuron's parameters act:

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
([`workbench.neurons.qk_importance`][workbench.neurons.qk_importance]). Hooks are removed when the ``with`` block ends, also on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from workbench.neurons.sets import NeuronDims, NeuronSet, structure_size

HOOK_OF = {
    "ffn": "mlp.hook_post",
    "attn_q": "attn.hook_q",
    "attn_k": "attn.hook_k",
    "attn_v": "attn.hook_v",
    "attn_o": "attn.hook_z",
}


def _mask_hook(keep: torch.Tensor) -> Callable:
    """Multiply the activation by ``keep``: ``[d_mlp]`` or ``[heads, d_head]``, or per batch row
    ``[b, 1, d_mlp]`` / ``[b, 1, heads, d_head]`` (broadcast over positions).
    """

    def hook(activation, hook):
        return activation * keep.to(activation.device, activation.dtype)

    return hook


def _keep_masks(dims: NeuronDims, neurons: NeuronSet) -> dict[tuple[str, int], torch.Tensor]:
    """``(structure, layer) -> keep`` (1 = on, 0 = off), shaped like the hooked activation's
    last axes, for every layer and structure where ``neurons`` switches something off.
    """
    out = {}
    for structure, masks in neurons.to_mask(dims).items():
        for layer, mask in enumerate(masks):
            if mask.any():
                keep = torch.from_numpy(~mask).float()
                out[structure, layer] = keep if structure == "ffn" else keep.reshape(-1, dims.d_head)
    return out


def mask_hooks(model, neurons: NeuronSet | Sequence[NeuronSet | None]) -> list[tuple[str, Callable]]:
    """Forward hooks that switch off exactly ``neurons`` (one hook per layer and structure).

    A sequence gives each batch row its own set (``None`` or empty: nothing off in that row), so
    differently masked runs can share one batch.
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
def switched_off(model, neurons: NeuronSet | Sequence[NeuronSet | None] | None) -> Iterator[None]:
    """Run the block with ``neurons`` switched off (nothing changes for ``None`` or an empty set);
    a sequence of sets gives each batch row its own.
    """
    hooks = [] if neurons is None else mask_hooks(model, neurons)
    if not hooks:
        yield
        return
    with model.hooks(fwd_hooks=hooks):
        yield
