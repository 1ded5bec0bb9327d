r"""The literal, sequential PLND: zero one neuron's parameters, rerun the layer, measure.

This is the definition ``Imp(N | c) = || T\N(h) - T(h) ||^2`` computed the slow way, one neuron
at a time, on one document. It exists to hold the parallel computation in
[`workbench.neurons.importance`][workbench.neurons.importance] to the definition (tests) and to
time the speed-up (benchmark). Parameters are zeroed (and restored) in a *copy* of the sublayer;
the model is never edited.

* FFN, V, O: the change of the sublayer's output (before any post-sublayer norm), summed over
  the document's counted positions.
* Q, K: the paper's approximation computed literally: the sublayer is rerun with the column of
  W_Q (W_K) and its bias zeroed, through whatever q/k norm and rotary embedding the model has,
  and the change of the attention pattern (every head) is measured.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int

from workbench.data.batching import counted_positions
from workbench.neurons.sets import ParameterEntry, structure_size, sublayer_entries

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformer_lens.components.abstract_attention import AbstractAttention


def _on_model(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` on the model's device (where the sublayers run and their outputs live)."""
    return tokens.to(next(model.parameters()).device)


def sublayer_inputs(
    model: HookedTransformer, tokens: Int[torch.Tensor, "1 pos"], layer: int
) -> tuple[Float[torch.Tensor, "1 pos d_model"], Float[torch.Tensor, "1 pos d_model"]]:
    """The inputs of layer ``layer``'s attention and MLP for one document.

    Args:
        model: The model.
        tokens: The document's token ids.
        layer: The layer.

    Returns:
        The residual stream before the attention and before the MLP (both read the block's input
        with parallel attention, GPT-NeoX style), each through the block's own norm (weights
        included).
    """
    tokens = _on_model(model, tokens)
    mlp_reads = "hook_resid_pre" if model.cfg.parallel_attn_mlp else "hook_resid_mid"
    names = (f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.{mlp_reads}")
    block = model.blocks[layer]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=layer + 1)
        return block.ln1(cache[names[0]]), block.ln2(cache[names[1]])


def _squared_change(new: torch.Tensor, old: torch.Tensor, weights: torch.Tensor) -> float:
    return float(((new - old).square().sum(-1) * weights).sum())


def ffn_reference(
    model: HookedTransformer,
    tokens: Int[torch.Tensor, "1 pos"],
    layer: int,
    neurons: Iterable[int],
    include_bos: bool = False,
    zero: str = "in",
) -> dict[int, float]:
    """Imp of FFN neurons: zero column k of W_in (W_gate) and b_in[k], or row k of W_out.

    Args:
        model: The model.
        tokens: One document's token ids.
        layer: The neurons' layer.
        neurons: The hidden units to score.
        include_bos: Count the BOS position too.
        zero: ``"in"`` zeroes the input side (W_in / W_gate columns and b_in), ``"out"`` W_out's row.

    Returns:
        Each neuron's importance.
    """
    tokens = _on_model(model, tokens)
    _, x = sublayer_inputs(model, tokens, layer)
    weights = counted_positions(torch.ones_like(tokens), include_bos)
    mlp = model.blocks[layer].mlp
    changed = copy.deepcopy(mlp)  # the model's own sublayer is never edited
    with torch.no_grad():
        base = mlp(x)
        out = {}
        for k in neurons:
            with _zeroed(_ffn_side(sublayer_entries(changed, model.cfg, "ffn", k), zero)):
                out[int(k)] = _squared_change(changed(x), base, weights)
    return out


def _ffn_side(entries: list[ParameterEntry], zero: str) -> list[ParameterEntry]:
    """The input side (W_in / W_gate columns and b_in: h[:, k] = act(0) * 0 = 0) or W_out's row."""
    return [e for e in entries if (e[0] == "W_out") == (zero == "out")]


def attention_reference(
    model: HookedTransformer,
    tokens: Int[torch.Tensor, "1 pos"],
    layer: int,
    structure: str,
    neurons: Iterable[int],
    include_bos: bool = False,
) -> dict[int, float]:
    """Imp of attention neurons by rerunning the sublayer.

    Args:
        model: The model.
        tokens: One document's token ids.
        layer: The neurons' layer.
        structure: ``attn_q``, ``attn_k``, ``attn_v`` or ``attn_o``.
        neurons: The neurons to score, by flat index ``head * d_head + k``.
        include_bos: Count the BOS position too.

    Returns:
        Each neuron's importance: the change of the attention pattern for Q and K, of the
        sublayer's output for V and O.

    Raises:
        ValueError: For a structure that is not an attention one.
        IndexError: For a neuron index past the structure's size.
    """
    if structure not in ("attn_q", "attn_k", "attn_v", "attn_o"):
        raise ValueError(f"Not an attention structure: {structure!r}")
    tokens = _on_model(model, tokens)
    x, _ = sublayer_inputs(model, tokens, layer)
    weights = counted_positions(torch.ones_like(tokens), include_bos)
    attn = model.blocks[layer].attn
    size = structure_size(model.cfg, structure)
    changed = copy.deepcopy(attn)  # the model's own sublayer is never edited
    with torch.no_grad():
        base_out, base_pattern = _run_attention(attn, x)
        out = {}
        for index in neurons:
            if not 0 <= index < size:
                raise IndexError(f"{structure} has {size} neurons per layer, not {index}")
            with _zeroed(sublayer_entries(changed, model.cfg, structure, index)):
                new_out, pattern = _run_attention(changed, x)
            if structure in ("attn_q", "attn_k"):
                diff = (pattern - base_pattern).square().sum(-1)  # [1, heads, q]
                out[int(index)] = float((diff * weights[:, None, :]).sum())
            else:
                out[int(index)] = _squared_change(new_out, base_out, weights)
    return out


@contextmanager
def _zeroed(entries: list[ParameterEntry]) -> Iterator[None]:
    """Zero some entries of (copied) parameters for the duration of the block, then restore them."""
    saved = [(param, index, param[index].clone()) for _, param, index in entries]
    with torch.no_grad():
        for param, index, _ in saved:
            param[index] = 0
        try:
            yield
        finally:
            for param, index, value in saved:
                param[index] = value


def _run_attention(attn: AbstractAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an attention sublayer alone: its output and its pattern."""
    captured = {}
    handle = attn.hook_pattern.register_forward_hook(lambda m, i, o: captured.setdefault("pattern", o))
    try:
        out = attn(x, x, x)
    finally:
        handle.remove()
    return out, captured["pattern"]
