"""Neurons and neuron sets: the currency of PLND, LAPE, deactivation and neuron fine-tuning.

A *neuron* (docs/methods.md §3) is one row or column of a parameter matrix, named by
``(layer, structure, index)``. The structures and what their index counts:

============  ======================================  ==========================================
structure     index                                   the neuron's parameters
============  ======================================  ==========================================
``ffn``       hidden unit ``k`` (``d_mlp``)           column k of W_in / W_gate, row k of W_out
``attn_q``    ``head * d_head + k`` (``n_heads``)     query dimension k of a head
``attn_k``    ``kv_head * d_head + k``                key dimension k of a key/value head
``attn_v``    ``kv_head * d_head + k``                value dimension k of a key/value head
``attn_o``    ``head * d_head + k`` (``n_heads``)     row (head, k) of W_O: the input dimension
============  ======================================  ==========================================

With grouped-query attention a key/value head serves ``n_heads / n_key_value_heads`` query
heads, so ``attn_k`` and ``attn_v`` have fewer neurons than ``attn_q`` and ``attn_o``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from jaxtyping import Bool, Int

from workbench.neurons.selection import STRUCTURES

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformer_lens.config import TransformerLensConfig

    from workbench.models.model import Model

ATTENTION: tuple[str, ...] = ("attn_q", "attn_k", "attn_v", "attn_o")
"""The attention structures (every structure but ``ffn``)."""

ParameterEntry = tuple[str, torch.Tensor, tuple[int | slice, ...]]
"""One neuron's entries in one parameter: ``(name, parameter, index)``, with ``parameter[index]`` the entries."""


@dataclass(frozen=True)
class NeuronDims:
    """How many neurons a model has, read from its weights (a bridged model's config may disagree)."""

    n_layers: int
    d_mlp: int
    n_heads: int
    d_head: int
    n_key_value_heads: int

    @classmethod
    def of(cls, model: Model) -> NeuronDims:
        """The dimensions of ``model``: layers and MLP width from its blocks, heads from W_O."""
        block = model.blocks[0]
        n_heads, d_head, _ = block.attn.W_O.shape
        return cls(
            n_layers=len(model.blocks),
            d_mlp=int(block.mlp.W_out.shape[0]),
            n_heads=int(n_heads),
            d_head=int(d_head),
            n_key_value_heads=int(getattr(model.cfg, "n_key_value_heads", None) or n_heads),
        )


def n_kv_heads(dims: NeuronDims | TransformerLensConfig) -> int:
    """Number of key/value heads (``n_heads`` without grouped-query attention)."""
    return dims.n_key_value_heads or dims.n_heads


def structure_size(dims: NeuronDims | TransformerLensConfig, structure: str) -> int:
    """Neurons of ``structure`` in one layer.

    Args:
        dims: The model's [`NeuronDims`][workbench.neurons.sets.NeuronDims], or its config.
        structure: One of [`STRUCTURES`][workbench.neurons.selection.STRUCTURES].

    Returns:
        ``d_mlp`` for ``ffn``, ``n_heads * d_head`` for ``attn_q`` and ``attn_o``,
        ``n_key_value_heads * d_head`` for ``attn_k`` and ``attn_v``.

    Raises:
        ValueError: For an unknown structure.
    """
    if structure == "ffn":
        return cast(int, dims.d_mlp)  # a config's d_mlp is None only for attention-only models
    if structure in ("attn_q", "attn_o"):
        return dims.n_heads * dims.d_head
    if structure in ("attn_k", "attn_v"):
        return n_kv_heads(dims) * dims.d_head
    raise ValueError(f"Unknown structure {structure!r}; choose from {', '.join(STRUCTURES)}.")


def check_structures(structures: Iterable[str]) -> list[str]:
    """The structures in canonical order.

    Args:
        structures: Structure names, in any order.

    Returns:
        The names, in the order of [`STRUCTURES`][workbench.neurons.selection.STRUCTURES].

    Raises:
        ValueError: For unknown names, listing the valid ones.
    """
    structures = list(structures)
    unknown = [s for s in structures if s not in STRUCTURES]
    if unknown:
        raise ValueError(f"Unknown structure(s) {', '.join(unknown)}; choose from {', '.join(STRUCTURES)}.")
    return [s for s in STRUCTURES if s in structures]


def total_neurons(dims: NeuronDims | TransformerLensConfig, structures: Iterable[str] = STRUCTURES) -> int:
    """All neurons of ``structures`` in the model (every layer)."""
    return dims.n_layers * sum(structure_size(dims, s) for s in structures)


def _pairs(array: np.ndarray | list[list[int]] | list[tuple[int, int]]) -> Int[np.ndarray, "n 2"]:
    out = np.asarray(array, dtype=np.int64).reshape(-1, 2)
    return np.unique(out, axis=0) if len(out) else out


@dataclass
class NeuronSet:
    """A set of neurons: per structure, a sorted ``[n, 2]`` int array of ``(layer, index)`` rows."""

    neurons: dict[str, Int[np.ndarray, "n 2"]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_structures(self.neurons)
        self.neurons = {s: _pairs(self.neurons[s]) for s in STRUCTURES if s in self.neurons}

    @classmethod
    def from_mask(cls, masks: dict[str, Bool[np.ndarray, "layer neuron"]]) -> NeuronSet:
        """The neurons set in boolean masks, one per structure."""
        return cls({s: np.argwhere(np.asarray(m)) for s, m in masks.items()})

    def to_mask(self, dims: NeuronDims | TransformerLensConfig) -> dict[str, Bool[np.ndarray, "layer neuron"]]:
        """Boolean masks per structure (every structure of the set), sized by ``dims``."""
        masks = {}
        for s, rows in self.neurons.items():
            mask = np.zeros((dims.n_layers, structure_size(dims, s)), dtype=bool)
            mask[rows[:, 0], rows[:, 1]] = True
            masks[s] = mask
        return masks

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.neurons.values())

    def count(self, structure: str | None = None) -> int:
        """Neurons of one structure, or of all of them for ``None``."""
        if structure is None:
            return len(self)
        return len(self.neurons.get(structure, ()))

    def per_layer(self, n_layers: int) -> dict[str, list[int]]:
        """Number of neurons in each layer, per structure."""
        return {s: np.bincount(rows[:, 0], minlength=n_layers).tolist() for s, rows in self.neurons.items()}

    def _combine(
        self, other: NeuronSet, op: Callable[[set[tuple[int, ...]], set[tuple[int, ...]]], set[tuple[int, ...]]]
    ) -> NeuronSet:
        out = {}
        for s in set(self.neurons) | set(other.neurons):
            a = {tuple(r) for r in self.neurons.get(s, np.empty((0, 2), np.int64)).tolist()}
            b = {tuple(r) for r in other.neurons.get(s, np.empty((0, 2), np.int64)).tolist()}
            out[s] = sorted(op(a, b))
        return NeuronSet(out)

    def __and__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, set.__and__)

    def __or__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, set.__or__)

    def __sub__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, set.__sub__)

    def only(self, structures: Iterable[str]) -> NeuronSet:
        """The neurons of some structures only."""
        return NeuronSet({s: r for s, r in self.neurons.items() if s in structures})

    def jaccard(self, other: NeuronSet) -> float:
        """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
        union = len(self | other)
        return len(self & other) / union if union else 1.0

    def to_dict(self) -> dict[str, list[list[int]]]:
        """The set as JSON-ready lists of ``[layer, index]`` pairs per structure."""
        return {s: rows.tolist() for s, rows in self.neurons.items()}

    @classmethod
    def from_dict(cls, data: dict[str, list[list[int]]]) -> NeuronSet:
        """The set [`to_dict`][workbench.neurons.sets.NeuronSet.to_dict] wrote."""
        return cls({s: np.asarray(rows, dtype=np.int64) for s, rows in data.items()})


def parameter_entries(model: HookedTransformer, layer: int, structure: str, index: int) -> list[ParameterEntry]:
    """The parameter entries that make up one neuron of a ``HookedTransformer``.

    FFN unit k: column k of W_in (and W_gate) and b_in[k], row k of W_out. Q/K/V dimension
    (head, k): that column of W_Q/W_K/W_V and its bias (with grouped-query attention the
    key/value head's own, shared, parameters). O: row (head, k) of W_O.

    Args:
        model: The model.
        layer: The neuron's layer.
        structure: The neuron's structure.
        index: The neuron's index within its layer and structure.

    Returns:
        What zeroing (or training) the neuron touches, as ``(name, parameter, index)``.
    """
    block = model.blocks[layer]
    return sublayer_entries(block.mlp if structure == "ffn" else block.attn, model.cfg, structure, index)


def sublayer_entries(
    sublayer: torch.nn.Module, cfg: TransformerLensConfig, structure: str, index: int
) -> list[ParameterEntry]:
    """One neuron's parameter entries in a sublayer module (``mlp`` or ``attn``), e.g. in a copy.

    What [`parameter_entries`][workbench.neurons.sets.parameter_entries] gives for the model's own
    sublayer.

    Args:
        sublayer: The layer's MLP (for ``ffn``) or attention module.
        cfg: The model's config (gated MLP, heads, key/value heads).
        structure: The neuron's structure.
        index: The neuron's index within its layer and structure.

    Returns:
        The entries, as ``(name, parameter, index)``.
    """
    k = int(index)
    parameter = functools.partial(_parameter, sublayer)
    if structure == "ffn":
        names = ["W_in", "W_gate"] if getattr(cfg, "gated_mlp", False) else ["W_in"]
        entries: list[ParameterEntry] = [(n, parameter(n), (slice(None), k)) for n in names]
        return entries + [("b_in", parameter("b_in"), (k,)), ("W_out", parameter("W_out"), (k,))]
    head, dim = divmod(k, cfg.d_head)
    if structure == "attn_o":
        return [("W_O", parameter("W_O"), (head, dim))]
    letter = structure[-1].upper()
    grouped = structure != "attn_q" and n_kv_heads(cfg) != cfg.n_heads
    prefix = "_" if grouped else ""
    weight, bias = parameter(f"{prefix}W_{letter}"), parameter(f"{prefix}b_{letter}")
    return [(f"W_{letter}", weight, (head, slice(None), dim)), (f"b_{letter}", bias, (head, dim))]


def _parameter(sublayer: torch.nn.Module, name: str) -> torch.Tensor:
    """``sublayer``'s weight or bias ``name`` (TransformerLens's modules hold them as attributes)."""
    return getattr(sublayer, name)
