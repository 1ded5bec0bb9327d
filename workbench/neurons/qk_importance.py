"""Q and K importances of the parameter neuron: column k of W_Q (or W_K), zeroed exactly.

A PLND query neuron (head h, dimension k) is column k of head h's W_Q with its bias, the same
parameters deactivation switches off and fine-tuning trains
([`workbench.neurons.masking`][workbench.neurons.masking]). Zeroing it sets the projection's
coordinate k to 0 *before* the q-norm and rotary embedding, so the query that enters the scores
changes in two ways:

* **q/k norm** (Gemma 3, Qwen 3, OLMo 2 style per-head RMSNorm): the row's RMS loses coordinate
  k, so the whole normalised vector grows by ``s = rms / rms_without_k``:
  ``q_n' = s (q_n - q_n[k] e_k)``.
* **rotary**: rotation at position t is linear, and ``R_t e_k = cos[t, k] e_k + sin*[t, k]
  e_{k'}`` touches k and its rotary partner k'.

So with ``r`` the rotated key and A the attention scale, the scores of query t change to
``S'_tj = s_t (S_tj - q_n[t, k] (cos[t, k] r_j[k] + sin*[t, k] r_j[k']) / A)``: a row rescaling
plus two outer products, the form
[`workbench.neurons.pattern_change`][workbench.neurons.pattern_change] evaluates for every neuron
at once. A key neuron (key/value head g, dimension k) is the mirror image: per key position j,
``S'_tj = s_j (S_tj - k_n[j, k] (cos[j, k] q_t[k] + sin*[j, k] q_t[k']) / A)`` in every query
head of group g, whose pattern changes add up. Without a norm ``s = 1``; without rotary
``cos = 1, sin* = 0``.

The importance itself is the paper's approximation (docs/methods.md §4): the change of the
attention pattern, ``sum_t || softmax(S'_t) - softmax(S_t) ||^2`` over the counted query rows,
computed exactly for every neuron.
[`workbench.neurons.plnd_reference`][workbench.neurons.plnd_reference] holds it to zeroing the
column of a copy of the sublayer and rerunning it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from jaxtyping import Float, Int

from workbench.errors import WorkbenchError
from workbench.neurons.pattern_change import (
    DEFAULT_CHUNK_ELEMENTS,
    MASKED_LOG,
    KeyFactors,
    RowFactors,
    row_pattern_change,
)

if TYPE_CHECKING:
    from transformer_lens.components.abstract_attention import AbstractAttention
    from transformer_lens.components.rms_norm import RMSNorm
    from transformer_lens.config import HookedTransformerConfig

    from workbench.models.model import Model

PER_HEAD_NORM_ARCHITECTURES = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
"""Architectures whose q/k norm is over all heads together, which the closed form does not cover."""


def check_supported(cfg: HookedTransformerConfig) -> None:
    """Refuse, with the fix, attention variants the closed form does not cover.

    Raises:
        WorkbenchError: For dynamic NTK rotary scaling, attention sinks, log-n query scaling,
            clipped q/k/v, or a q/k norm over all heads together.
    """
    unsupported = [
        (getattr(cfg, "use_dynamic_ntk_rope", False), "dynamic NTK rotary scaling"),
        (getattr(cfg, "use_attention_sinks", False), "attention sinks"),
        (getattr(cfg, "use_logn_attn", False), "log-n query scaling"),
        (getattr(cfg, "clip_qkv", None) is not None, "clipped q/k/v"),
        (
            getattr(cfg, "use_qk_norm", False) and cfg.original_architecture in PER_HEAD_NORM_ARCHITECTURES,
            "a q/k norm over all heads together",
        ),
    ]
    for present, what in unsupported:
        if present:
            raise WorkbenchError(
                f"Q/K importances do not handle {what}; use structures ffn, attn_v, attn_o "
                "(--plnd-structures ffn,attn_v,attn_o)."
            )


def hook_names(model: Model, layer: int) -> dict[str, str]:
    """The hooks a layer's Q/K importances read.

    Returns:
        ``q``, ``k``: the projections (before any norm); ``rot_q``, ``rot_k``: the rotated vectors
        (with rotary embeddings only); ``scores``: the attention scores.
    """
    prefix = f"blocks.{layer}.attn"
    names = {"q": f"{prefix}.hook_q", "k": f"{prefix}.hook_k", "scores": f"{prefix}.hook_attn_scores"}
    if model.cfg.positional_embedding_type == "rotary":
        names |= {"rot_q": f"{prefix}.hook_rot_q", "rot_k": f"{prefix}.hook_rot_k"}
    return names


def rotary_pairs(
    attn: AbstractAttention, n_pos: int
) -> tuple[Int[torch.Tensor, " d_head"], Float[torch.Tensor, "pos d_head"], Float[torch.Tensor, "pos d_head"]]:
    """The rotation the attention applies at positions ``0..n_pos-1``, as coordinate pairs.

    ``R_t e_k = cos[t, k] e_k + sin[t, k] e_{partner[k]}``; dimensions past ``rotary_dim`` pass
    unrotated. Read from the module's own rotation (``rotate_every_two``, its sin/cos tables), so
    either pairing convention is right.

    Args:
        attn: The attention module.
        n_pos: How many positions.

    Returns:
        ``(partner, cos, sin)``; without rotary embeddings each coordinate is its own partner,
        ``cos = 1`` and ``sin = 0``.

    Raises:
        WorkbenchError: For more positions than the model's rotary table holds.
    """
    d_head = attn.cfg.d_head
    device = attn.W_Q.device
    partner = torch.arange(d_head, device=device)
    cos = torch.ones(n_pos, d_head, device=device)
    sin = torch.zeros(n_pos, d_head, device=device)
    if attn.cfg.positional_embedding_type != "rotary":
        return partner, cos, sin
    dim = cast(int, attn.cfg.rotary_dim)  # the config sets it for every rotary model
    if n_pos > attn.rotary_cos.shape[0]:
        raise WorkbenchError(f"{n_pos} positions exceed the model's rotary table; use shorter documents.")
    flip = attn.rotate_every_two(torch.eye(dim, device=device))  # row k: flip(e_k) = sign * e_partner
    partner[:dim] = flip.abs().argmax(-1)
    sign = flip.gather(1, partner[:dim, None])[:, 0]
    cos[:, :dim] = attn.rotary_cos[:n_pos].float()
    sin[:, :dim] = attn.rotary_sin[:n_pos].float()[:, partner[:dim]] * sign
    return partner, cos, sin


def norm_factors(
    raw: Float[torch.Tensor, "*vectors d_head"], norm: RMSNorm | None
) -> tuple[Float[torch.Tensor, "*vectors d_head"], Float[torch.Tensor, "*vectors d_head"]]:
    """How a per-head RMSNorm's output grows when one coordinate of its input is zeroed.

    Args:
        raw: Vectors before the norm.
        norm: The norm, or None for none.

    Returns:
        ``(s, normed)``: ``s[..., k]`` the factor by which the normalised vector grows when
        coordinate k is zeroed, ``normed`` the normalised coordinates. Without a norm: ``(1, raw)``.
    """
    raw = raw.float()
    if norm is None:
        return torch.ones_like(raw), raw
    mean_square = raw.square().mean(-1, keepdim=True) + norm.eps
    without = (mean_square - raw.square() / raw.shape[-1]).clamp_min(norm.eps)
    return (mean_square / without).sqrt(), raw * mean_square.rsqrt() * norm.w.float()


def query_and_key_importance(
    attn: AbstractAttention,
    acts: dict[str, Float[torch.Tensor, "batch ..."]],
    weights: Float[torch.Tensor, "batch pos"],
    which: tuple[str, ...] = ("attn_q", "attn_k"),
    backend: str = "auto",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict[str, Float[torch.Tensor, "batch _ d_head"]]:
    """Importances of every query and key neuron of one layer.

    Args:
        attn: The layer's attention module.
        acts: What the hooks of [`hook_names`][workbench.neurons.qk_importance.hook_names] saw, by
            the same keys.
        weights: The query rows that count (padding and BOS at 0).
        which: ``attn_q``, ``attn_k`` or both.
        backend: How pattern changes are computed (``auto``, ``c`` or ``torch``).
        chunk_elements: Floats per temporary of the torch backend.

    Returns:
        ``attn_q``: ``[batch, head, d_head]``; ``attn_k``: ``[batch, kv_head, d_head]`` (the
        pattern changes of a key/value group's query heads add up).
    """
    cfg = attn.cfg
    n_q, n_k = acts["scores"].shape[-2:]
    scale = float(attn.attn_scale)
    norms = (getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)) if cfg.use_qk_norm else (None, None)
    s_q, q_normed = norm_factors(acts["q"], norms[0])
    s_k, k_normed = norm_factors(acts["k"], norms[1])
    rotary = cfg.positional_embedding_type == "rotary"
    rq = acts["rot_q"].float() if rotary else q_normed  # [b, pos, heads, d]: what enters the scores
    rk = acts["rot_k"].float() if rotary else k_normed  # [b, pos, kv_heads, d]
    partner, cos, sin = rotary_pairs(attn, max(n_q, n_k))
    cos_q, sin_q, cos_k, sin_k = cos[n_k - n_q : n_k], sin[n_k - n_q : n_k], cos[:n_k], sin[:n_k]
    change = _pattern_change(attn, acts["scores"], rq, rk, weights, backend, chunk_elements)
    out = {}
    if "attn_q" in which:
        row, key = query_factors(s_q, q_normed, rk, partner, cos_q / scale, sin_q / scale)
        out["attn_q"] = torch.einsum("bhtc,bt->bhc", change(row, key), weights)
    if "attn_k" in which:
        row, key = key_factors(s_k, k_normed, rq, partner, cos_k / scale, sin_k / scale)
        per_head = torch.einsum("bhtc,bt->bhc", change(row, key), weights)
        out["attn_k"] = per_head.reshape(per_head.shape[0], rk.shape[2], -1, per_head.shape[-1]).sum(2)
    return out


def _pattern_change(
    attn: AbstractAttention,
    scores: torch.Tensor,
    rq: torch.Tensor,
    rk: torch.Tensor,
    weights: torch.Tensor,
    backend: str,
    chunk_elements: int,
) -> Callable[[RowFactors, KeyFactors], torch.Tensor]:
    """[`row_pattern_change`][workbench.neurons.pattern_change.row_pattern_change] for one layer's scores.

    ``scores`` are the hooked ones (scaled, capped, masked with -inf); ``rq``, ``rk`` the vectors
    that entered them. With a soft cap the raw scores are recomputed from those rather than
    un-capped (atanh loses precision near the cap).
    """
    cfg = attn.cfg
    scores = scores.float()  # [b, heads, q, k]
    pattern = torch.softmax(scores, dim=-1)
    finite = torch.isfinite(scores)
    soft_cap = float(cfg.attn_scores_soft_cap or 0.0)
    capped = torch.where(finite, scores, torch.zeros_like(scores))
    if soft_cap > 0:
        group = scores.shape[1] // rk.shape[2]
        raw = torch.einsum("bqhd,bkhd->bhqk", rq, rk.repeat_interleave(group, 2)) / float(attn.attn_scale)
        raw = torch.where(finite, raw, torch.zeros_like(raw))
    else:
        raw = capped
    counted = weights > 0
    causal = cfg.attention_dir == "causal"
    log_p = torch.log_softmax(scores, dim=-1).clamp_min(MASKED_LOG)

    def change(row: RowFactors, key: KeyFactors) -> torch.Tensor:
        return row_pattern_change(
            pattern, raw, row, key, counted, causal, capped, soft_cap, backend, chunk_elements, log_p
        )

    return change


def _heads_first(t: torch.Tensor) -> torch.Tensor:
    """``[b, pos, heads, d]`` -> ``[b, heads, pos, d]``."""
    return t.permute(0, 2, 1, 3)


def query_factors(
    s: Float[torch.Tensor, "batch pos head d_head"],
    normed: Float[torch.Tensor, "batch pos head d_head"],
    rk: Float[torch.Tensor, "batch pos kv_head d_head"],
    partner: Int[torch.Tensor, " d_head"],
    cos: Float[torch.Tensor, "pos d_head"],
    sin: Float[torch.Tensor, "pos d_head"],
) -> tuple[RowFactors, KeyFactors]:
    """[`row_pattern_change`][workbench.neurons.pattern_change.row_pattern_change]'s factors for query neurons.

    Args:
        s: The query norm's growth factors ([`norm_factors`][workbench.neurons.qk_importance.norm_factors]).
        normed: The normalised queries.
        rk: The rotated keys.
        partner: Each coordinate's rotary partner.
        cos: The rotation's cosines at the query positions, divided by the attention scale.
        sin: Its signed sines, likewise.

    Returns:
        Per query row the norm's growth ``s - 1`` and the coordinate's weights on the key's
        coordinate and its rotary partner; per key the rotated key.
    """
    rows = _heads_first
    row: RowFactors = {"f": rows(s - 1), "p": rows(s * normed * cos[:, None]), "q": rows(s * normed * sin[:, None])}
    key: KeyFactors = {"E": None, "U": rk.permute(0, 2, 1, 3), "V": rk[..., partner].permute(0, 2, 1, 3)}
    return row, key


def key_factors(
    s: Float[torch.Tensor, "batch pos kv_head d_head"],
    normed: Float[torch.Tensor, "batch pos kv_head d_head"],
    rq: Float[torch.Tensor, "batch pos head d_head"],
    partner: Int[torch.Tensor, " d_head"],
    cos: Float[torch.Tensor, "pos d_head"],
    sin: Float[torch.Tensor, "pos d_head"],
) -> tuple[RowFactors, KeyFactors]:
    """The mirror image of [`query_factors`][workbench.neurons.qk_importance.query_factors] for key neurons.

    Args:
        s: The key norm's growth factors.
        normed: The normalised keys.
        rq: The rotated queries.
        partner: Each coordinate's rotary partner.
        cos: The rotation's cosines at the key positions, divided by the attention scale.
        sin: Its signed sines, likewise.

    Returns:
        Per query row the rotated query's coordinate and its partner; per key position the norm's
        growth and the coordinate's weights.
    """
    keys = _heads_first
    key: KeyFactors = {"E": keys(s - 1), "U": keys(s * normed * cos[:, None]), "V": keys(s * normed * sin[:, None])}
    row: RowFactors = {"f": None, "p": rq.permute(0, 2, 1, 3), "q": rq[..., partner].permute(0, 2, 1, 3)}
    return row, key
