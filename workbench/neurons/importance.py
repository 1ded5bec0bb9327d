r"""Parallel neuron importance (PLND, docs/methods.md §4): every neuron of every layer in one forward pass.

``Imp(N | c) = || T\N(h) - T(h) ||^2``: how much a sublayer's output changes over document
``c`` when neuron N's parameters are zeroed. One pass of hooks gives all of them at once:

* **FFN** (``blocks.{i}.mlp.hook_post`` = h): zeroing hidden unit k removes ``h[:, k] W_out[k]``,
  so ``Imp_k = sum_t h[t, k]^2 * ||W_out[k]||^2`` (gated and plain MLPs alike).
* **Attention O** (``hook_z`` = z): zeroing W_O's input row (head h, dim k) removes
  ``z[:, h, k] W_O[h, k]``: ``Imp = sum_t z[t, h, k]^2 * ||W_O[h, k]||^2``.
* **Attention V**: V is outside the softmax, so zeroing value dimension (g, k) sets
  ``z[:, h, k] = 0`` for every query head h that reads key/value head g; the output changes by
  ``sum_{h in g} z[:, h, k] W_O[h, k]`` (one head without grouped-query attention, where V and
  O importances coincide).
* **Attention Q and K** (the paper's approximation): zeroing column k of W_Q (W_K) changes the
  attention scores through the q/k norm and rotary embedding
  ([`workbench.neurons.qk_importance`][workbench.neurons.qk_importance]);
  ``Imp ~ sum_t || softmax(S'_t) - softmax(S_t) ||^2`` over the counted query rows (masked keys
  stay masked), summed over the query heads of a key's group for K. Every neuron of a layer is
  done together ([`workbench.neurons.pattern_change`][workbench.neurons.pattern_change]: a C
  kernel on CPUs, tensors elsewhere).

FFN, V and O importances measure the **sublayer output** exactly, before any norm that follows
the sublayer (Gemma 2/3's ``ln1_post``/``ln2_post``); Q and K importances measure the attention
pattern, as in the paper. Importance is summed over a document's real tokens: padding never
counts, and neither does the BOS position unless ``include_bos`` (BOS carries no text and its
huge activations would dominate every language alike).

The blocks run with ``stop_at_layer``: the unembedding is never computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS, Batch, counted_positions, iter_batches, pad_id_of
from workbench.errors import WorkbenchError
from workbench.models.model import Model
from workbench.neurons.masking import Hook
from workbench.neurons.pattern_change import DEFAULT_CHUNK_ELEMENTS
from workbench.neurons.qk_importance import check_supported, hook_names, query_and_key_importance
from workbench.neurons.sets import STRUCTURES, NeuronDims, check_structures, n_kv_heads, structure_size

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint


@dataclass
class BatchImportance:
    """Importances of one batch of documents (rows in ``index`` order of the batch).

    Attributes:
        index: The documents' indices (into the token list).
        n_tokens: Tokens counted per document.
        importance: Per structure, each document's importances.
        positive: Per document, the tokens on which each FFN neuron's activation is positive
            (LAPE's counts; None unless asked for).
    """

    index: list[int]
    n_tokens: Float[torch.Tensor, " batch"]
    importance: dict[str, Float[torch.Tensor, "batch layer neuron"]]
    positive: Float[torch.Tensor, "batch layer d_mlp"] | None = None


def check_structures_fit(model: Model, structures: Sequence[str]) -> None:
    """Refuse, early and with the fix, what the closed forms or the hooks cannot do for a model.

    Raises:
        WorkbenchError: For Q/K importances of a model loaded through ``TransformerBridge``, or
            of an attention variant their closed form does not cover.
    """
    from transformer_lens import HookedTransformer

    qk = [s for s in structures if s in ("attn_q", "attn_k")]
    if qk and not isinstance(model, HookedTransformer):
        raise WorkbenchError(
            f"{'/'.join(qk)} importances need a HookedTransformer; this model is loaded through "
            "TransformerBridge. Use structures ffn, attn_v, attn_o (--plnd-structures ffn,attn_v,attn_o)."
        )
    if qk and isinstance(model, HookedTransformer):
        check_supported(model.cfg)


def value_importance(
    z: Float[torch.Tensor, "batch pos head d_head"],
    W_O: Float[torch.Tensor, "head d_head d_model"],
    weights: Float[torch.Tensor, "batch pos"],
    n_kv: int,
) -> Float[torch.Tensor, "batch kv_head d_head"]:
    """V importances: ``sum_t || sum_{h in group} z[t, h, k] W_O[h, k] ||^2``.

    Args:
        z: The attention's ``hook_z``.
        W_O: The output projection.
        weights: The positions that count.
        n_kv: Key/value heads.

    Returns:
        Each value neuron's importance, per document.
    """
    b, pos, n_heads, d_head = z.shape
    group = n_heads // n_kv
    zg = (z.float() * weights.sqrt()[:, :, None, None]).reshape(b, pos, n_kv, group, d_head)
    zz = torch.einsum("btgrk,btgsk->bgrsk", zg, zg)  # [b, kv, r, r, d_head]
    W = W_O.float().reshape(n_kv, group, d_head, -1)
    gram = torch.einsum("grkm,gskm->grsk", W, W)  # [kv, r, r, d_head]
    return torch.einsum("bgrsk,grsk->bgk", zz, gram)


def output_importance(
    z: Float[torch.Tensor, "batch pos head d_head"],
    W_O: Float[torch.Tensor, "head d_head d_model"],
    weights: Float[torch.Tensor, "batch pos"],
) -> Float[torch.Tensor, "batch head d_head"]:
    """O importances: ``sum_t z[t, h, k]^2 * ||W_O[h, k]||^2``, per document."""
    return torch.einsum("bthk,bt->bhk", z.float().square(), weights) * W_O.float().square().sum(-1)


def ffn_importance(
    post: Float[torch.Tensor, "batch pos d_mlp"],
    W_out: Float[torch.Tensor, "d_mlp d_model"],
    weights: Float[torch.Tensor, "batch pos"],
) -> Float[torch.Tensor, "batch d_mlp"]:
    """FFN importances: ``sum_t h[t, k]^2 * ||W_out[k]||^2``, per document."""
    return torch.einsum("btk,bt->bk", post.float().square(), weights) * W_out.float().square().sum(-1)


class _Collector:
    """Hook functions that fill one batch's importances, layer by layer, as the forward runs."""

    def __init__(
        self,
        model: Model,
        weights: torch.Tensor,
        structures: list[str],
        lape: bool,
        chunk_elements: int,
        backend: str,
    ):
        dims = self.dims = NeuronDims.of(model)
        b, n = weights.shape[0], dims.n_layers
        self.model, self.weights, self.chunk_elements, self.backend = model, weights, chunk_elements, backend
        self.importance = {s: torch.zeros(b, n, structure_size(dims, s)) for s in structures}
        self.positive = torch.zeros(b, n, dims.d_mlp) if lape else None
        self.qk: dict[int, dict[str, torch.Tensor]] = {}
        self.qk_which = tuple(s for s in ("attn_q", "attn_k") if s in structures)

    def hooks(self) -> list[tuple[str, Hook]]:
        out: list[tuple[str, Hook]] = []
        for layer in range(self.dims.n_layers):
            if "ffn" in self.importance:
                out.append((f"blocks.{layer}.mlp.hook_post", self._ffn(layer)))
            if self.positive is not None:
                out.append((f"blocks.{layer}.mlp.hook_pre", self._positive(layer, self.positive)))
            if "attn_v" in self.importance or "attn_o" in self.importance:
                out.append((f"blocks.{layer}.attn.hook_z", self._z(layer)))
            if self.qk_which:
                names = hook_names(self.model, layer)
                scores = names.pop("scores")
                out += [(name, self._keep(layer, key)) for key, name in names.items()]
                out.append((scores, self._scores(layer)))
        return out

    def _ffn(self, layer: int) -> Hook:
        def hook(post: torch.Tensor, hook: HookPoint) -> None:
            W_out = self.model.blocks[layer].mlp.W_out
            self.importance["ffn"][:, layer] = ffn_importance(post, W_out, self.weights.to(post.device)).cpu()

        return hook

    def _positive(self, layer: int, positive: torch.Tensor) -> Hook:
        def hook(pre: torch.Tensor, hook: HookPoint) -> None:
            # act(x) > 0 exactly when x > 0 for ReLU, GELU and SiLU (LAPE's "activated").
            positive[:, layer] = torch.einsum("btk,bt->bk", (pre > 0).float(), self.weights.to(pre.device)).cpu()

        return hook

    def _z(self, layer: int) -> Hook:
        def hook(z: torch.Tensor, hook: HookPoint) -> None:
            W_O, weights = self.model.blocks[layer].attn.W_O, self.weights.to(z.device)
            if "attn_o" in self.importance:
                self.importance["attn_o"][:, layer] = output_importance(z, W_O, weights).flatten(1).cpu()
            if "attn_v" in self.importance:
                value = value_importance(z, W_O, weights, n_kv_heads(self.dims))
                self.importance["attn_v"][:, layer] = value.flatten(1).cpu()

        return hook

    def _keep(self, layer: int, key: str) -> Hook:
        def hook(x: torch.Tensor, hook: HookPoint) -> None:
            self.qk.setdefault(layer, {})[key] = x.detach()

        return hook

    def _scores(self, layer: int) -> Hook:
        def hook(scores: torch.Tensor, hook: HookPoint) -> None:
            acts = {**self.qk.pop(layer), "scores": scores.detach()}
            attn = self.model.blocks[layer].attn
            weights = self.weights.to(scores.device)
            found = query_and_key_importance(attn, acts, weights, self.qk_which, self.backend, self.chunk_elements)
            for structure, values in found.items():
                self.importance[structure][:, layer] = values.flatten(1).cpu()

        return hook


def batch_importance(
    model: Model,
    batch: Batch,
    structures: Sequence[str] = STRUCTURES,
    lape: bool = False,
    include_bos: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    backend: str = "auto",
) -> BatchImportance:
    """Importances of every neuron of ``structures`` for each document of a padded batch.

    Args:
        model: The model (Q/K importances need a ``HookedTransformer``).
        batch: The documents, padded.
        structures: Which structures to score.
        lape: Also count, per FFN neuron, the tokens where its activation is positive (LAPE,
            docs/methods.md §6), from the same forward pass.
        include_bos: Count the BOS position too.
        chunk_elements: Floats per temporary of the torch backend of Q/K pattern changes.
        backend: How Q/K pattern changes are computed
            ([`workbench.neurons.pattern_change`][workbench.neurons.pattern_change]: ``auto``,
            ``c`` or ``torch``).

    Returns:
        The batch's importances (and LAPE's counts), on the CPU.

    Raises:
        WorkbenchError: For structures the model cannot be scored on
            ([`check_structures_fit`][workbench.neurons.importance.check_structures_fit]).
    """
    structures = check_structures(structures)
    check_structures_fit(model, structures)
    weights = counted_positions(batch.mask, include_bos).to(batch.tokens.device)
    collector = _Collector(model, weights, structures, lape, chunk_elements, backend)
    with torch.no_grad():
        model.run_with_hooks(batch.tokens, fwd_hooks=list(collector.hooks()), stop_at_layer=len(model.blocks))
    return BatchImportance(batch.index, weights.sum(1).cpu(), collector.importance, collector.positive)


def iter_importance(
    model: Model,
    tokens: Sequence[Int[torch.Tensor, " pos"]],
    structures: Sequence[str] = STRUCTURES,
    lape: bool = False,
    include_bos: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    backend: str = "auto",
    documents: Sequence[int] | None = None,
) -> Iterator[BatchImportance]:
    """Importances batch by batch over tokenized documents (streams: nothing is kept here).

    Args:
        model: The model.
        tokens: Each document's token ids, BOS first.
        structures: Which structures to score.
        lape: Also count LAPE's positive activations.
        include_bos: Count the BOS position too.
        batch_tokens: Tokens per batch (padding included).
        chunk_elements: Floats per temporary of the torch backend of Q/K pattern changes.
        backend: How Q/K pattern changes are computed (``auto``, ``c`` or ``torch``).
        documents: Only these documents (indices into ``tokens``); by default all.

    Yields:
        Each batch's importances ([`batch_importance`][workbench.neurons.importance.batch_importance]).
    """
    device = next(model.parameters()).device
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, device, documents):
        yield batch_importance(model, batch, structures, lape, include_bos, chunk_elements, backend)
