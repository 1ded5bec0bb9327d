"""Q and K importances of the parameter neuron: column k of W_Q (or W_K), zeroed exactly.

A PLND query neuron (head h, dimension k) is column k of head h's W_Q with its bias, the same
parameters deactivation switches off and fine-tuning trains ([`workbench.neurons.masking`][workbench.neurons.masking]). Zeroing it
sets the projection's coordinate k to 0 *before* the q-norm and rotary embedding, so the query
that enters the scores changes in two ways:

* **q/k norm** (Gemma 3, Qwen 3, OLMo 2 style per-head RMSNorm): the row's RMS loses coordinate
  k, so the whole normalised vector grows by ``s = rms / rms_without_k``:
  ``q_n' = s (q_n - q_n[k] e_k)``.
* **rotary**: rotation at position t is linear, and ``R_t e_k = cos[t, k] e_k + sin*[t, k]
  e_{k'}`` touches k and its rotary partner k'.

So with ``r`` the rotated key and A the attention scale, the scores of query t change to
``S'_tj = s_t (S_tj - q_n[t, k] (cos[t, k] r_j[k] + sin*[t, k] r_j[k']) / A)``: a row rescaling
plus two outer products, the form [`workbench.neurons.pattern_change`][workbench.neurons.pattern_change] evaluates for every neuron at
once. A key neuron (key/value head g, dimension k) is the mirror image: per key position j,
``S'_tj = s_j (S_tj - k_n[j, k] (cos[j, k] q_t[k] + sin*[j, k] q_t[k']) / A)`` in every query
head of group g, whose pattern changes add up. Without a norm ``s = 1``; without rotary
``cos = 1, sin* = 0``.

The importance itself is the paper's approximation (docs/methods.md §4): the change of the
attention pattern, ``sum_t || softmax(S'_t) - softmax(S_t) ||^2`` over the counted query rows,
computed exactly for every neuron. [`workbench.neurons.plnd_reference`][workbench.neurons.plnd_reference] holds it to zeroing the
column of a copy of the sublayer and rerunning it.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.neurons.pattern_change import DEFAULT_CHUNK_ELEMENTS, MASKED_LOG, row_pattern_change

PER_HEAD_NORM_ARCHITECTURES = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def check_supported(cfg) -> None:
    """Refuse, with the fix, attention variants the closed form does not cover."""
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


def hook_names(model, layer: int) -> dict[str, str]:
    """The hooks a layer's Q/K importances read: projections (before any norm), rotated
    vectors (with rotary embeddings), scores.
    """
    prefix = f"blocks.{layer}.attn"
    names = {"q": f"{prefix}.hook_q", "k": f"{prefix}.hook_k", "scores": f"{prefix}.hook_attn_scores"}
    if model.cfg.positional_embedding_type == "rotary":
        names |= {"rot_q": f"{prefix}.hook_rot_q", "rot_k": f"{prefix}.hook_rot_k"}
    return names


def rotary_pairs(attn, n_pos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(partner [d_head], cos [pos, d_head], sin [pos, d_head])`` with ``R_t e_k = cos[t, k]
    e_k + sin[t, k] e_{partner[k]}`` for the rotation the attention applies at positions
    ``0..n_pos-1`` (dimensions past ``rotary_dim`` pass unrotated). Read from the module's own
    rotation (``rotate_every_two``, its sin/cos tables), so either pairing convention is right.
    """
    d_head = attn.cfg.d_head
    device = attn.W_Q.device
    partner = torch.arange(d_head, device=device)
    cos = torch.ones(n_pos, d_head, device=device)
    sin = torch.zeros(n_pos, d_head, device=device)
    if attn.cfg.positional_embedding_type != "rotary":
        return partner, cos, sin
    dim = attn.cfg.rotary_dim
    if n_pos > attn.rotary_cos.shape[0]:
        raise WorkbenchError(f"{n_pos} positions exceed the model's rotary table; use shorter documents.")
    flip = attn.rotate_every_two(torch.eye(dim, device=device))  # row k: flip(e_k) = sign * e_partner
    partner[:dim] = flip.abs().argmax(-1)
    sign = flip.gather(1, partner[:dim, None])[:, 0]
    cos[:, :dim] = attn.rotary_cos[:n_pos].float()
    sin[:, :dim] = attn.rotary_sin[:n_pos].float()[:, partner[:dim]] * sign
    return partner, cos, sin


def norm_factors(raw: torch.Tensor, norm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, normed)`` for vectors ``raw [..., d_head]`` before a per-head RMSNorm: ``s[..., k]``
    the factor by which the normalised vector grows when coordinate k is zeroed, ``normed`` the
    normalised coordinates. Without a norm: ``(1, raw)``.
    """
    raw = raw.float()
    if norm is None:
        return torch.ones_like(raw), raw
    mean_square = raw.square().mean(-1, keepdim=True) + norm.eps
    without = (mean_square - raw.square() / raw.shape[-1]).clamp_min(norm.eps)
    return (mean_square / without).sqrt(), raw * mean_square.rsqrt() * norm.w.float()


def query_and_key_importance(
    attn,
    acts: dict[str, torch.Tensor],
    weights: torch.Tensor,
    which: tuple[str, ...] = ("attn_q", "attn_k"),
    backend: str = "auto",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict[str, torch.Tensor]:
    """Importances of every query neuron ``[b, heads, d_head]`` and key neuron ``[b, kv_heads,
    d_head]`` of one layer, from the activations the hooks of [`hook_names`][workbench.neurons.qk_importance.hook_names] saw.

    ``weights [b, pos]`` are the query rows that count (padding and BOS at 0).
    """
    cfg = attn.cfg
    scores = acts["scores"].float()  # [b, heads, q, k]: scaled, capped, masked (-inf)
    b, n_heads, n_q, n_k = scores.shape
    pattern = torch.softmax(scores, dim=-1)
    finite = torch.isfinite(scores)
    scale = float(attn.attn_scale)
    norms = (getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)) if cfg.use_qk_norm else (None, None)
    s_q, q_normed = norm_factors(acts["q"], norms[0])
    s_k, k_normed = norm_factors(acts["k"], norms[1])
    rotary = cfg.positional_embedding_type == "rotary"
    rq = acts["rot_q"].float() if rotary else q_normed  # [b, pos, heads, d]: what enters the scores
    rk = acts["rot_k"].float() if rotary else k_normed  # [b, pos, kv_heads, d]
    partner, cos, sin = rotary_pairs(attn, max(n_q, n_k))
    cos_q, sin_q, cos_k, sin_k = cos[n_k - n_q : n_k], sin[n_k - n_q : n_k], cos[:n_k], sin[:n_k]
    soft_cap = float(cfg.attn_scores_soft_cap or 0.0)
    capped = torch.where(finite, scores, torch.zeros_like(scores))
    if soft_cap > 0:  # the raw scores, recomputed rather than un-capped (atanh loses precision near the cap)
        group = n_heads // rk.shape[2]
        raw = torch.einsum("bqhd,bkhd->bhqk", rq, rk.repeat_interleave(group, 2)) / scale
        raw = torch.where(finite, raw, torch.zeros_like(raw))
    else:
        raw = capped
    common = {
        "pattern": pattern,
        "scores": raw,
        "counted": weights > 0,
        "causal": cfg.attention_dir == "causal",
        "capped": capped,
        "soft_cap": soft_cap,
        "backend": backend,
        "chunk_elements": chunk_elements,
        "log_p": torch.log_softmax(scores, dim=-1).clamp_min(MASKED_LOG),
    }
    out = {}
    if "attn_q" in which:
        row, key = query_factors(s_q, q_normed, rk, partner, cos_q / scale, sin_q / scale)
        out["attn_q"] = torch.einsum("bhtc,bt->bhc", row_pattern_change(row=row, key=key, **common), weights)
    if "attn_k" in which:
        row, key = key_factors(s_k, k_normed, rq, partner, cos_k / scale, sin_k / scale)
        per_head = torch.einsum("bhtc,bt->bhc", row_pattern_change(row=row, key=key, **common), weights)
        out["attn_k"] = per_head.reshape(b, rk.shape[2], -1, per_head.shape[-1]).sum(2)  # a group's heads add up
    return out


def _heads_first(t: torch.Tensor) -> torch.Tensor:
    """``[b, pos, heads, d]`` -> ``[b, heads, pos, d]``."""
    return t.permute(0, 2, 1, 3)


def query_factors(s, normed, rk, partner, cos, sin) -> tuple[dict, dict]:
    """[`row_pattern_change`][workbench.neurons.pattern_change.row_pattern_change]'s factors for query neurons: per query
    row the norm's growth ``s - 1`` and the coordinate's weights on the key's coordinate and its
    rotary partner (``cos``, ``sin`` divided by the attention scale); per key the rotated key.
    ``s``, ``normed`` ``[b, pos, heads, d]``, ``rk [b, pos, kv_heads, d]``.
    """
    rows = _heads_first
    row = {"f": rows(s - 1), "p": rows(s * normed * cos[:, None]), "q": rows(s * normed * sin[:, None])}
    key = {"E": None, "U": rk.permute(0, 2, 1, 3), "V": rk[..., partner].permute(0, 2, 1, 3)}
    return row, key


def key_factors(s, normed, rq, partner, cos, sin) -> tuple[dict, dict]:
    """The mirror image for key neurons: per key position the norm's growth and the coordinate's
    weights; per query row the rotated query's coordinate and its partner. ``s``, ``normed``
    ``[b, pos, kv_heads, d]``, ``rq [b, pos, heads, d]``.
    """
    keys = _heads_first
    key = {"E": keys(s - 1), "U": keys(s * normed * cos[:, None]), "V": keys(s * normed * sin[:, None])}
    row = {"f": None, "p": rq.permute(0, 2, 1, 3), "q": rq[..., partner].permute(0, 2, 1, 3)}
    return row, key
