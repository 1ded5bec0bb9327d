"""Parallel neuron importance (PLND, docs/methods.md §4): every neuron of every layer in one forward pass.

``Imp(N | c) = || T\\N(h) - T(h) ||^2``: how much a sublayer's output changes over document
``c`` when neuron N's parameters are zeroed. One pass of hooks gives all of them at once:

* **FFN** (``blocks.{i}.mlp.hook_post`` = h): zeroing hidden unit k removes ``h[:, k] W_out[k]``,
  so ``Imp_k = sum_t h[t, k]^2 * ||W_out[k]||^2`` (gated and plain MLPs alike).
* **Attention O** (``hook_z`` = z): zeroing W_O's input row (head h, dim k) removes
  ``z[:, h, k] W_O[h, k]``: ``Imp = sum_t z[t, h, k]^2 * ||W_O[h, k]||^2``.
* **Attention V**: V is outside the softmax, so zeroing value dimension (g, k) sets
  ``z[:, h, k] = 0`` for every query head h that reads key/value head g; the output changes by
  ``sum_{h in g} z[:, h, k] W_O[h, k]`` (one head without grouped-query attention, where V and
  O importances coincide).
* **Attention Q and K** (the paper's approximation): zeroing query dim k of head h changes the
  scores by ``Delta = q[:, h, k] outer k[:, g, k]``; ``Imp ~ || softmax(S) - softmax(S - Delta /
  scale) ||^2`` over real query rows and keys (masked keys stay masked). Zeroing key dim (g, k)
  removes the same term from every query head of group g, so ``Imp_K(g, k) = sum_{h in g}
  Imp_Q(h, k)`` exactly. q and k are the vectors that enter the dot product (after rotary and
  any q/k norm), so with rotary embeddings a "dimension" is one of the rotated coordinates.
  All dimensions are done together, a chunk at a time, so memory stays under ``chunk_elements``
  floats per temporary however long the document.

FFN, V and O importances measure the **sublayer output** exactly, before any norm that follows
the sublayer (Gemma 2/3's ``ln1_post``/``ln2_post``); Q and K importances measure the attention
pattern, as in the paper. Importance is summed over a document's real tokens: padding never
counts, and neither does the BOS position unless ``include_bos`` (BOS carries no text and its
huge activations would dominate every language alike).

The blocks run with ``stop_at_layer``: the unembedding is never computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench.batching import DEFAULT_BATCH_TOKENS, Batch, iter_batches, pad_id_of
from workbench.errors import WorkbenchError
from workbench.neurons import STRUCTURES, NeuronDims, check_structures, n_kv_heads, structure_size

DEFAULT_CHUNK_ELEMENTS = 1 << 22  # floats per [batch, rows, dims, keys] temporary (16 MiB; fastest measured)


@dataclass
class BatchImportance:
    """Importances of one batch of documents (rows in ``index`` order of the batch)."""

    index: list[int]  # document indices (into the token list)
    n_tokens: torch.Tensor  # [b] tokens counted per document
    importance: dict[str, torch.Tensor]  # structure -> [b, n_layers, size]
    positive: torch.Tensor | None = None  # [b, n_layers, d_mlp] tokens with FFN activation > 0


def counted_positions(mask: torch.Tensor, include_bos: bool = False) -> torch.Tensor:
    """``[b, pos]`` float weights: 1 on real tokens that count, 0 on padding (and on BOS)."""
    weights = mask.to(torch.float32).clone()
    if not include_bos:
        weights[:, 0] = 0.0
    return weights


def _check_structures_fit(model, structures: list[str]) -> None:
    """Refuse, early and with the fix, what the closed forms or the hooks cannot do for a model."""
    from transformer_lens import HookedTransformer

    cfg = model.cfg
    qk = [s for s in structures if s in ("attn_q", "attn_k")]
    if qk and not isinstance(model, HookedTransformer):
        raise WorkbenchError(
            f"{'/'.join(qk)} importances need a HookedTransformer; this model is loaded through "
            "TransformerBridge. Use structures ffn, attn_v, attn_o (--plnd-structures ffn,attn_v,attn_o)."
        )
    if qk and (getattr(cfg, "use_attention_sinks", False) or getattr(cfg, "use_logn_attn", False)):
        raise WorkbenchError(
            "Q/K importances do not handle attention sinks or log-n query scaling; "
            "use structures ffn, attn_v, attn_o."
        )
    if qk and getattr(cfg, "use_qk_norm", False) and cfg.positional_embedding_type != "rotary":
        raise WorkbenchError("Q/K importances need rotary hooks when q/k norms are used.")


def qk_hook_names(model, layer: int) -> tuple[str, str]:
    """The hooks whose q and k enter the attention dot product (after rotary, if any)."""
    prefix = f"blocks.{layer}.attn"
    if model.cfg.positional_embedding_type == "rotary":
        return f"{prefix}.hook_rot_q", f"{prefix}.hook_rot_k"
    return f"{prefix}.hook_q", f"{prefix}.hook_k"


def query_importance(
    scores: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    weights: torch.Tensor,
    scale: float,
    soft_cap: float = 0.0,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    causal: bool = True,
) -> torch.Tensor:
    """The paper's Q approximation for every query dimension of every head: ``[b, heads, d_head]``.

    ``scores`` are the masked, scaled (and soft-capped) attention scores ``[b, heads, q, k]`` as
    the model computes them (``hook_attn_scores``); ``q [b, pos, heads, d_head]`` and
    ``k [b, pos, kv_heads, d_head]`` the vectors of the dot product; ``weights [b, pos]`` the
    query rows that count. Query rows are taken in blocks (with causal attention, only with the
    keys they can see) and dimensions in chunks, so no temporary exceeds ``chunk_elements``
    floats.

    Without a soft cap, with the model's pattern P and ``E_j = exp(-delta_j)``, the changed
    pattern is ``P_j E_j / Z`` with ``Z = sum_j P_j E_j``, so the importance of a row is
    ``sum_j P_j^2 (E_j - Z)^2 / Z^2``: one exponential per entry and two matrix-vector products
    instead of a softmax. A chunk whose exponentials overflow or vanish is redone exactly with a
    plain softmax (as is everything under a soft cap).
    """
    b, n_heads, n_q, n_k = scores.shape
    d_head, group = q.shape[-1], n_heads // k.shape[2]
    out = torch.zeros(b, n_heads, d_head, dtype=torch.float32, device=scores.device)
    for h in range(n_heads):
        q_scaled = q[:, :, h].float() / -scale  # [b, pos, d_head]: exp(q_scaled * k) = E
        k_t = k[:, :, h // group].float().transpose(1, 2)  # [b, d_head, pos]
        for rows, keys in _row_blocks(n_q, n_k, max(1, chunk_elements // (b * n_k)), causal):
            s = scores[:, h, rows, keys].float()  # [b, r, k]
            pattern = torch.softmax(s, dim=-1)
            chunk = max(1, min(d_head, chunk_elements // max(1, s.numel())))
            for start in range(0, d_head, chunk):
                dims = slice(start, start + chunk)
                qd, kd = q_scaled[:, rows, dims, None], k_t[:, None, dims, keys]
                row_imp = None if soft_cap > 0 else _row_importance_by_exp(torch.mul(qd, kd), pattern)
                if row_imp is None:  # [b, r, c, k] minus delta again: the fast path spent it
                    row_imp = _row_importance_by_softmax(s, torch.mul(qd, kd), pattern, soft_cap)
                out[:, h, dims] += torch.einsum("brc,br->bc", row_imp, weights[:, rows])
    return out


def _row_importance_by_exp(minus_delta: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor | None:
    """``[b, r, c]``: ``sum_j P_j^2 (E_j - Z)^2 / Z^2``; None when that is not numerically safe.

    Works in place on ``minus_delta``.
    """
    b, r, c, n_k = minus_delta.shape
    e = minus_delta.exp_().view(b * r, c, n_k)
    p = pattern.reshape(b * r, n_k, 1)
    z = torch.bmm(e, p)  # [b*r, c, 1]
    if not (torch.isfinite(z).all() and (z > 1e-30).all()):
        return None
    squared = torch.bmm(e.sub_(z).square_(), p.square())
    return squared.div_(z.square()).view(b, r, c)


def _row_importance_by_softmax(
    scores: torch.Tensor, minus_delta: torch.Tensor, pattern: torch.Tensor, soft_cap: float
) -> torch.Tensor:
    """``[b, r, c]``: ``|| softmax(cap(raw - delta)) - P ||^2`` per row, from the capped scores
    (masked entries stay masked)."""
    changed = _uncap(scores, soft_cap).unsqueeze(2) + minus_delta  # [b, r, c, k]
    if soft_cap > 0:
        masked = ~torch.isfinite(scores).unsqueeze(2)
        changed = (soft_cap * torch.tanh(changed / soft_cap)).masked_fill_(masked, -torch.inf)
    return torch.softmax(changed, dim=-1).sub_(pattern.unsqueeze(2)).square_().sum(-1)


def _row_blocks(n_q: int, n_k: int, max_rows: int, causal: bool) -> list[tuple[slice, slice]]:
    """Query row blocks, each with the keys it can see. Causal attention never looks ahead, so
    splitting the rows into (at least) 4 blocks skips most of the masked upper triangle."""
    size = max(1, min(max_rows, -(-n_q // 4) if causal else n_q))
    offset = n_k - n_q  # keys before the first query (0 without a cache)
    return [
        (slice(r, min(n_q, r + size)), slice(0, offset + min(n_q, r + size) if causal else n_k))
        for r in range(0, n_q, size)
    ]


def _uncap(scores: torch.Tensor, soft_cap: float) -> torch.Tensor:
    """Scores before the soft cap ``cap * tanh(x / cap)`` (masked entries stay -inf)."""
    if soft_cap <= 0:
        return scores
    finite = torch.isfinite(scores)
    raw = soft_cap * torch.atanh((scores / soft_cap).clamp(-1 + 1e-7, 1 - 1e-7))
    return torch.where(finite, raw, scores)


def key_importance(query: torch.Tensor, n_kv: int) -> torch.Tensor:
    """K importances from Q importances: a key dimension serves every query head of its group."""
    b, n_heads, d_head = query.shape
    return query.reshape(b, n_kv, n_heads // n_kv, d_head).sum(2)


def value_importance(z: torch.Tensor, W_O: torch.Tensor, weights: torch.Tensor, n_kv: int) -> torch.Tensor:
    """``[b, kv_heads, d_head]``: ``sum_t || sum_{h in group} z[t, h, k] W_O[h, k] ||^2``."""
    b, pos, n_heads, d_head = z.shape
    group = n_heads // n_kv
    zg = (z.float() * weights.sqrt()[:, :, None, None]).reshape(b, pos, n_kv, group, d_head)
    zz = torch.einsum("btgrk,btgsk->bgrsk", zg, zg)  # [b, kv, r, r, d_head]
    W = W_O.float().reshape(n_kv, group, d_head, -1)
    gram = torch.einsum("grkm,gskm->grsk", W, W)  # [kv, r, r, d_head]
    return torch.einsum("bgrsk,grsk->bgk", zz, gram)


def output_importance(z: torch.Tensor, W_O: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[b, heads, d_head]``: ``sum_t z[t, h, k]^2 * ||W_O[h, k]||^2``."""
    return torch.einsum("bthk,bt->bhk", z.float().square(), weights) * W_O.float().square().sum(-1)


def ffn_importance(post: torch.Tensor, W_out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[b, d_mlp]``: ``sum_t h[t, k]^2 * ||W_out[k]||^2``."""
    return torch.einsum("btk,bt->bk", post.float().square(), weights) * W_out.float().square().sum(-1)


class _Collector:
    """Hook functions that fill one batch's importances, layer by layer, as the forward runs."""

    def __init__(self, model, weights: torch.Tensor, structures: list[str], lape: bool, chunk_elements: int):
        dims = self.dims = NeuronDims.of(model)
        b, n = weights.shape[0], dims.n_layers
        self.model, self.weights, self.chunk_elements = model, weights, chunk_elements
        self.importance = {s: torch.zeros(b, n, structure_size(dims, s)) for s in structures}
        self.positive = torch.zeros(b, n, dims.d_mlp) if lape else None
        self.qk: dict[int, dict[str, torch.Tensor]] = {}

    def hooks(self) -> list[tuple[str, Callable]]:
        out = []
        for layer in range(self.dims.n_layers):
            if "ffn" in self.importance:
                out.append((f"blocks.{layer}.mlp.hook_post", self._ffn(layer)))
            if self.positive is not None:
                out.append((f"blocks.{layer}.mlp.hook_pre", self._positive(layer)))
            if "attn_v" in self.importance or "attn_o" in self.importance:
                out.append((f"blocks.{layer}.attn.hook_z", self._z(layer)))
            if "attn_q" in self.importance or "attn_k" in self.importance:
                q_name, k_name = qk_hook_names(self.model, layer)
                out += [(q_name, self._keep(layer, "q")), (k_name, self._keep(layer, "k"))]
                out.append((f"blocks.{layer}.attn.hook_attn_scores", self._scores(layer)))
        return out

    def _ffn(self, layer):
        def hook(post, hook):
            W_out = self.model.blocks[layer].mlp.W_out
            self.importance["ffn"][:, layer] = ffn_importance(post, W_out, self.weights).cpu()

        return hook

    def _positive(self, layer):
        def hook(pre, hook):
            # act(x) > 0 exactly when x > 0 for ReLU, GELU and SiLU (LAPE's "activated").
            self.positive[:, layer] = torch.einsum("btk,bt->bk", (pre > 0).float(), self.weights).cpu()

        return hook

    def _z(self, layer):
        def hook(z, hook):
            W_O = self.model.blocks[layer].attn.W_O
            if "attn_o" in self.importance:
                self.importance["attn_o"][:, layer] = output_importance(z, W_O, self.weights).flatten(1).cpu()
            if "attn_v" in self.importance:
                value = value_importance(z, W_O, self.weights, n_kv_heads(self.dims))
                self.importance["attn_v"][:, layer] = value.flatten(1).cpu()

        return hook

    def _keep(self, layer, which):
        def hook(x, hook):
            self.qk.setdefault(layer, {})[which] = x.detach()

        return hook

    def _scores(self, layer):
        def hook(scores, hook):
            cfg, kept = self.model.cfg, self.qk.pop(layer)
            attn = self.model.blocks[layer].attn
            query = query_importance(
                scores.detach(), kept["q"], kept["k"], self.weights, float(attn.attn_scale),
                float(cfg.attn_scores_soft_cap or 0.0), self.chunk_elements, cfg.attention_dir == "causal",
            )  # fmt: skip
            if "attn_q" in self.importance:
                self.importance["attn_q"][:, layer] = query.flatten(1).cpu()
            if "attn_k" in self.importance:
                self.importance["attn_k"][:, layer] = key_importance(query, n_kv_heads(self.dims)).flatten(1).cpu()

        return hook


def batch_importance(
    model,
    batch: Batch,
    structures: Sequence[str] = STRUCTURES,
    lape: bool = False,
    include_bos: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> BatchImportance:
    """Importances of every neuron of ``structures`` for each document of a padded batch.

    With ``lape`` also counts, per FFN neuron, the tokens where its activation is positive
    (LAPE, docs/methods.md §6), from the same forward pass.
    """
    structures = check_structures(structures)
    _check_structures_fit(model, structures)
    weights = counted_positions(batch.mask, include_bos).to(batch.tokens.device)
    collector = _Collector(model, weights, structures, lape, chunk_elements)
    with torch.no_grad():
        model.run_with_hooks(batch.tokens, fwd_hooks=collector.hooks(), stop_at_layer=len(model.blocks))
    return BatchImportance(batch.index, weights.sum(1).cpu(), collector.importance, collector.positive)


def iter_importance(
    model,
    tokens: Sequence[torch.Tensor],
    structures: Sequence[str] = STRUCTURES,
    lape: bool = False,
    include_bos: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Iterator[BatchImportance]:
    """Importances batch by batch over tokenized documents (streams: nothing is kept here)."""
    device = next(model.parameters()).device
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, device):
        yield batch_importance(model, batch, structures, lape, include_bos, chunk_elements)
