"""``HookedTransformer`` configs read from a folder's own ``config.json``.

For the families whose architecture TransformerLens has but whose config it builds only from
official hub names.

TransformerLens 3.9 knows GPT-2, Gemma 1/2/3 and OLMo as architectures, but it reads GPT-2's
``n_ctx`` (transformers 5 configs carry ``n_positions`` only) and builds Gemma and OLMo configs
from tables keyed by hub names, so a local folder (a user's fine-tune, a model trained here) of
those families cannot convert. XGLM, the FFN paper's family, it does not have at all, but XGLM is
OPT's block with a scaled embedding and sinusoidal positions: both fold into ``W_E`` and
``W_pos`` exactly, and OPT's weight converter does the rest.

[`native_config`][workbench.models.native.native_config] builds the config from the HF config
(every field the forward pass reads: norms, rotary bases local and global, sliding windows,
softcaps, query scaling, q/k norms); [`native_state_dict`][workbench.models.native.native_state_dict]
converts the weights with TransformerLens's own converters. The coverage tests hold every family's
logits to the HF model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from transformer_lens import HookedTransformerConfig

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

MAX_ROTARY_CTX = 8192
"""The longest context of a native Gemma config: TransformerLens's own cap (masks are n_ctx x n_ctx)."""


def _rope_theta(params: dict[str, Any] | None) -> float:
    """The rotary base of one rope-parameters dict.

    A scaling, which no native config reads, is found by
    [`conversion_gap`][workbench.models.native.conversion_gap].
    """
    return float((params or {}).get("rope_theta", 10000.0))


def _layer_types(hf) -> dict[str, Any]:
    """Sliding-window layers as TransformerLens's local attention (every layer global without one)."""
    types = getattr(hf, "layer_types", None) or ["full_attention"] * hf.num_hidden_layers
    if "sliding_attention" not in types or not getattr(hf, "sliding_window", None):
        return {"use_local_attn": False}
    attn_types = ["local" if t == "sliding_attention" else "global" for t in types]
    return {"use_local_attn": True, "attn_types": attn_types, "window_size": hf.sliding_window}


def _gemma_common(hf) -> dict[str, Any]:
    """The config fields every Gemma generation shares."""
    rope = hf.rope_parameters or {}
    global_rope = rope.get("full_attention", rope)
    cfg = {
        "d_model": hf.hidden_size,
        "d_head": hf.head_dim,
        "n_heads": hf.num_attention_heads,
        "n_key_value_heads": hf.num_key_value_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": min(hf.max_position_embeddings, MAX_ROTARY_CTX),
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "initializer_range": hf.initializer_range,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_dim": hf.head_dim,
        "rotary_base": _rope_theta(global_rope),
        "use_attn_scale": True,
        "gated_mlp": True,
        "final_rms": True,
    }
    if "sliding_attention" in rope:
        cfg["rotary_base_local"] = _rope_theta(rope["sliding_attention"])
    scalar = getattr(hf, "query_pre_attn_scalar", None)
    if scalar is not None:
        cfg["attn_scale"] = math.sqrt(scalar)
    return cfg


def _gemma(hf) -> dict[str, Any]:
    return {**_gemma_common(hf), "act_fn": hf.hidden_act}


def _gemma2(hf) -> dict[str, Any]:
    cfg = {
        **_gemma_common(hf),
        **_layer_types(hf),
        "act_fn": hf.hidden_activation,
        "use_normalization_before_and_after": True,
    }
    if hf.attn_logit_softcapping:
        cfg["attn_scores_soft_cap"] = float(hf.attn_logit_softcapping)
    if hf.final_logit_softcapping:
        cfg["output_logits_soft_cap"] = float(hf.final_logit_softcapping)
    return cfg


def _gemma3(hf) -> dict[str, Any]:
    return {**_gemma2(hf), "use_qk_norm": True}


def _gpt2(hf) -> dict[str, Any]:
    return {
        "d_model": hf.n_embd,
        "d_head": hf.n_embd // hf.n_head,
        "n_heads": hf.n_head,
        "d_mlp": hf.n_inner or 4 * hf.n_embd,
        "n_layers": hf.n_layer,
        "n_ctx": hf.n_positions,
        "eps": hf.layer_norm_epsilon,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.activation_function,
        "use_attn_scale": hf.scale_attn_weights,
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": hf.scale_attn_by_inverse_layer_idx,
        "normalization_type": "LN",
    }


def _olmo(hf) -> dict[str, Any]:
    d_head = hf.hidden_size // hf.num_attention_heads
    kv = hf.num_key_value_heads
    return {
        "d_model": hf.hidden_size,
        "d_head": d_head,
        "n_heads": hf.num_attention_heads,
        "n_key_value_heads": kv if kv != hf.num_attention_heads else None,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": 1e-5,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.hidden_act,
        "initializer_range": hf.initializer_range,
        "normalization_type": "LN",
        "rotary_base": _rope_theta(hf.rope_parameters),
        "rotary_dim": d_head,
        "positional_embedding_type": "rotary",
        "gated_mlp": True,
        "clip_qkv": hf.clip_qkv,
    }


def _xglm(hf) -> dict[str, Any]:
    return {
        "d_model": hf.d_model,
        "d_head": hf.d_model // hf.attention_heads,
        "n_heads": hf.attention_heads,
        "d_mlp": hf.ffn_dim,
        "n_layers": hf.num_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": 1e-5,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.activation_function,
        "use_attn_scale": True,
        "use_local_attn": False,
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
    }


CONFIGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "GPT2LMHeadModel": _gpt2,
    "GemmaForCausalLM": _gemma,
    "Gemma2ForCausalLM": _gemma2,
    "Gemma3ForCausalLM": _gemma3,
    "OlmoForCausalLM": _olmo,
    "XGLMForCausalLM": _xglm,
}


def native_config(
    hf_model: PreTrainedModel, name: str, device: str | torch.device, dtype: torch.dtype
) -> HookedTransformerConfig | None:
    """The ``HookedTransformerConfig`` of ``hf_model``, built from its own config.

    Args:
        hf_model: The loaded HF model.
        name: The model's name in the config (``model_name``, ``tokenizer_name``).
        device: The config's device.
        dtype: The config's dtype.

    Returns:
        The config, or None for a family TransformerLens converts by itself.
    """
    hf = hf_model.config
    architecture = (getattr(hf, "architectures", None) or [type(hf_model).__name__])[0]
    build = CONFIGS.get(architecture)
    if build is None:
        return None
    cfg = {
        **build(hf),
        "original_architecture": architecture,
        "model_name": name,
        "tokenizer_name": name,
        "init_weights": False,
        "device": device,
        "dtype": dtype,
    }
    return HookedTransformerConfig.from_dict(cfg)


def conversion_gap(hf_config: PretrainedConfig, cfg: HookedTransformerConfig) -> str | None:
    """What of the HF model's attention ``cfg`` does not carry, or None.

    A sliding window on other layers or of another width, a scaled rotary embedding
    TransformerLens did not read, bidirectional attention: each would give numbers that differ
    from the model's only on long prompts (or subtly), so a load that finds one takes the bridge
    instead.
    """
    window = getattr(hf_config, "sliding_window", None)
    if window and getattr(hf_config, "use_sliding_window", True) is not False:
        types = getattr(hf_config, "layer_types", None) or ["sliding_attention"] * cfg.n_layers
        theirs = [t == "sliding_attention" for t in types]
        ours = [
            bool(cfg.use_local_attn) and (cfg.attn_types or ["local"] * cfg.n_layers)[i] == "local"
            for i in range(cfg.n_layers)
        ]
        if theirs != ours or (any(theirs) and cfg.window_size != window):
            return f"its sliding window ({window} tokens on layers {[i for i, t in enumerate(theirs) if t]})"
    scaled = cfg.use_NTK_by_parts_rope or cfg.use_yarn_rope or cfg.rotary_scaling_factor != 1
    for rope_type in _rope_types(hf_config):
        if rope_type != "default" and not scaled:
            return f"its {rope_type!r} rotary scaling"
    if getattr(hf_config, "use_bidirectional_attention", False):
        return "bidirectional attention"
    return None


def _rope_types(hf_config: PretrainedConfig) -> set[str]:
    """The rotary types a config asks for (per layer type where it has several)."""
    params = getattr(hf_config, "rope_parameters", None) or {}
    groups = params.values() if params and all(isinstance(v, dict) for v in params.values()) else [params]
    return {str(g.get("rope_type") or g.get("type") or "default") for g in groups}


def native_state_dict(hf_model: PreTrainedModel, cfg: HookedTransformerConfig) -> dict[str, torch.Tensor]:
    """``hf_model``'s weights through TransformerLens's converter of its family.

    XGLM goes through OPT's, on a re-labelled view of the model. ``cfg`` is the model's
    [`native_config`][workbench.models.native.native_config].
    """
    from transformer_lens.pretrained.weight_conversions.gemma import convert_gemma_weights
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformer_lens.pretrained.weight_conversions.olmo import convert_olmo_weights
    from transformer_lens.pretrained.weight_conversions.opt import convert_opt_weights

    if cfg.original_architecture == "XGLMForCausalLM":
        return convert_opt_weights(_xglm_as_opt(hf_model), cfg)
    converters = {
        "GPT2LMHeadModel": convert_gpt2_weights,
        "GemmaForCausalLM": convert_gemma_weights,
        "Gemma2ForCausalLM": convert_gemma_weights,
        "Gemma3ForCausalLM": convert_gemma_weights,
        "OlmoForCausalLM": convert_olmo_weights,
    }
    return converters[str(cfg.original_architecture)](hf_model, cfg)


def _xglm_as_opt(xglm):
    """XGLM seen as OPT: the same layer names, with XGLM's embeddings folded in.

    The embedding scale is folded into the token embedding (the unembedding stays the unscaled,
    tied matrix) and the sinusoidal table (with OPT's offset of 2) is the position embedding.
    """
    model = xglm.model
    decoder = SimpleNamespace(
        embed_tokens=SimpleNamespace(weight=model.embed_tokens.weight * model.embed_tokens.embed_scale),
        embed_positions=SimpleNamespace(weight=model.embed_positions.weights[: model.max_target_positions + 2]),
        layers=model.layers,
        final_layer_norm=model.layer_norm,
    )
    return SimpleNamespace(model=SimpleNamespace(decoder=decoder), lm_head=xglm.lm_head)


__all__ = ["CONFIGS", "conversion_gap", "native_config", "native_state_dict"]
