"""Tiny random Hugging Face models of every family the workbench supports, saved as folders.

A researcher's model arrives as a folder (``config.json``, weights, tokenizer) and is loaded with
``--model FOLDER``. [`save_family`][workbench.models.families.save_family] builds the smallest
model of a family from its own ``transformers`` config class (two layers, grouped-query attention
where the family has it, and the family's quirks switched on, see
[`FAMILIES`][workbench.models.families.FAMILIES]), gives it the byte tokenizer and saves it with
``save_pretrained``: the same route a downloaded model takes, in a second and offline. The
model-coverage tests run every analysis on each, and ``workbench models --tiny FAMILY FOLDER``
makes one to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

VOCAB = 260
"""The byte tokenizer's vocabulary size."""
WINDOW = 16
"""Sliding windows shorter than a verse, so that the window changes the numbers."""
TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
"""The byte tokenizer's special token ids, in every family's config."""
LLAMA_LIKE = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


@dataclass(frozen=True)
class Family:
    """One model family: its ``transformers`` classes, its tiny model's settings, and their quirks.

    Attributes:
        name: The family's name (``llama``, ``gemma2``, ...).
        config_class: The name of its ``transformers`` config class.
        model_class: The name of its ``transformers`` causal LM class.
        settings: The tiny model's config values.
        quirks: What those settings switch on, in words (for the docs and the coverage table).
    """

    name: str
    config_class: str
    model_class: str
    settings: dict[str, Any]
    quirks: str

    def config(self, **overrides: Any) -> PretrainedConfig:
        """The tiny model's ``transformers`` config, with ``overrides`` (a variant of the family)."""
        import transformers

        return getattr(transformers, self.config_class)(**{**TOKENS, **self.settings, **overrides})


def _gemma(extra: dict[str, Any]) -> dict[str, Any]:
    return {**LLAMA_LIKE, "head_dim": 8, "num_key_value_heads": 1, **extra}


GEMMA2_LAYERS = {"sliding_window": WINDOW, "layer_types": ["sliding_attention", "full_attention"]}
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("llama", "LlamaConfig", "LlamaForCausalLM", LLAMA_LIKE, "grouped-query attention, rotary"),
        Family(
            "mistral",
            "MistralConfig",
            "MistralForCausalLM",
            {**LLAMA_LIKE, "sliding_window": WINDOW},
            "grouped-query attention, sliding window",
        ),
        Family("qwen2", "Qwen2Config", "Qwen2ForCausalLM", LLAMA_LIKE, "q/k/v biases, grouped-query attention"),
        Family(
            "qwen3",
            "Qwen3Config",
            "Qwen3ForCausalLM",
            {**LLAMA_LIKE, "head_dim": 8},
            "per-head q/k norm, grouped-query attention",
        ),
        Family("phi3", "Phi3Config", "Phi3ForCausalLM", LLAMA_LIKE, "fused qkv and gate/up projections"),
        Family(
            "gpt-neox",
            "GPTNeoXConfig",
            "GPTNeoXForCausalLM",
            {
                "vocab_size": VOCAB,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "max_position_embeddings": 512,
                "use_parallel_residual": True,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            },
            "parallel attention and MLP, partial rotary",
        ),
        Family(
            "bloom",
            "BloomConfig",
            "BloomForCausalLM",
            {"vocab_size": VOCAB, "hidden_size": 32, "n_layer": 2, "n_head": 4},
            "ALiBi, embedding LayerNorm",
        ),
        Family(
            "opt",
            "OPTConfig",
            "OPTForCausalLM",
            {
                "vocab_size": VOCAB,
                "hidden_size": 32,
                "ffn_dim": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "max_position_embeddings": 512,
                "word_embed_proj_dim": 32,
            },
            "learned positions (offset 2), ReLU",
        ),
        Family(
            "gpt2",
            "GPT2Config",
            "GPT2LMHeadModel",
            {"vocab_size": VOCAB, "n_positions": 512, "n_embd": 32, "n_layer": 2, "n_head": 4},
            "learned positions, no n_ctx in the config",
        ),
        Family(
            "gemma",
            "GemmaConfig",
            "GemmaForCausalLM",
            _gemma({"hidden_act": "gelu_pytorch_tanh"}),
            "multi-query attention, scaled embedding, (1 + w) RMSNorm",
        ),
        Family(
            "gemma2",
            "Gemma2Config",
            "Gemma2ForCausalLM",
            _gemma(
                {
                    "num_key_value_heads": 2,
                    "query_pre_attn_scalar": 16,
                    "attn_logit_softcapping": 2.0,
                    "final_logit_softcapping": 5.0,
                    **GEMMA2_LAYERS,
                }
            ),
            "attention and logit softcapping, alternating sliding window, query scaling, sandwich norms",
        ),
        Family(
            "gemma3",
            "Gemma3TextConfig",
            "Gemma3ForCausalLM",
            _gemma(
                {
                    **GEMMA2_LAYERS,
                    "query_pre_attn_scalar": 8,
                    "rope_parameters": {
                        "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                    },
                }
            ),
            "q/k norm, local and global rotary bases, sliding window",
        ),
        Family(
            "olmo",
            "OlmoConfig",
            "OlmoForCausalLM",
            {**LLAMA_LIKE, "num_key_value_heads": 4},
            "LayerNorm without weights",
        ),
        Family(
            "xglm",
            "XGLMConfig",
            "XGLMForCausalLM",
            {
                "vocab_size": VOCAB,
                "d_model": 32,
                "ffn_dim": 64,
                "num_layers": 2,
                "attention_heads": 4,
                "max_position_embeddings": 512,
                "decoder_start_token_id": 1,
            },
            "sinusoidal positions (offset 2), scaled embedding",
        ),
    ]
}
"""Every model family the workbench builds tiny models of (and the coverage matrix runs), by name."""


def family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        UnknownModelError: No family is called ``name``; the message lists them.
    """
    from workbench.errors import UnknownModelError

    if name not in FAMILIES:
        raise UnknownModelError(f"Unknown model family {name!r}; choose one of {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def tiny_family_model(name: str, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A randomly initialised model of family ``name`` (seeded: two calls give the same weights).

    Args:
        name: A family of [`FAMILIES`][workbench.models.families.FAMILIES].
        seed: The seed of the weights.
        **overrides: Config changes (a variant of the family).
    """
    import torch
    import transformers

    spec = family(name)
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(spec.config(**overrides)).eval()
    with torch.no_grad():
        for param in model.parameters():  # large enough that softmaxes, caps and norms all bend
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
            else:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def save_family(name: str, folder: str | Path, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """Save the tiny model of family ``name`` and the byte tokenizer into ``folder``.

    Args:
        name: A family of [`FAMILIES`][workbench.models.families.FAMILIES].
        folder: Where ``save_pretrained`` writes.
        seed: The seed of the weights.
        **overrides: Config changes (a variant of the family).

    Returns:
        The saved model.
    """
    from workbench.models.tiny import byte_tokenizer

    model = tiny_family_model(name, seed, **overrides)
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return model


__all__ = ["FAMILIES", "Family", "family", "save_family", "tiny_family_model"]
