"""The tiny test models: randomly initialised, seeded, with a byte tokenizer that needs no files.

``tiny`` is GPT-2 style (LayerNorm, learned positions); ``tiny-gated`` is Gemma/Llama style (gated
MLP, RMSNorm, rotary, grouped-query attention). Both load in a fraction of a second and offline,
which is what the unit tests run on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from workbench.errors import UnknownModelError
from workbench.models.model import ModelSource, set_source

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast


def with_bos(tok: Tokenizer, bos_id: int) -> PreTrainedTokenizerFast:
    """``tok`` as a transformers tokenizer that prepends ``<bos>`` and pads on the right.

    The workbench's own tokenizers (the tiny models' bytes, the zoo's BPE) share its special tokens:
    ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.

    Args:
        tok: A ``tokenizers`` tokenizer whose vocabulary holds those four specials.
        bos_id: The id of ``<bos>`` in that vocabulary.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        padding_side="right",
    )


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (4 specials + 256 bytes) that needs no files and prepends <bos>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = with_bos(tok, bos_id=1)
    # TransformerLens reads these to decide whether to reload the tokenizer from disk; with
    # add_bos_token set it keeps this in-memory object as it is.
    fast.init_kwargs.update(name_or_path="workbench-bytes", add_bos_token=True)
    return fast


def tiny_config(kind: str = "tiny", d_vocab: int = 260) -> HookedTransformerConfig:
    """The config of a tiny test model: GPT-2 style (``tiny``) or Gemma/Llama style (``tiny-gated``).

    Raises:
        UnknownModelError: ``kind`` is neither.
    """
    common = dict(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=128, n_ctx=256, d_vocab=d_vocab)
    if kind == "tiny":
        return HookedTransformerConfig.from_dict(
            {
                **common,
                "act_fn": "gelu_new",
                "normalization_type": "LN",
                "model_name": "tiny",
                "positional_embedding_type": "standard",
            }
        )
    if kind == "tiny-gated":
        return HookedTransformerConfig.from_dict(
            {
                **common,
                "act_fn": "gelu_pytorch_tanh",
                "normalization_type": "RMS",
                "gated_mlp": True,
                "positional_embedding_type": "rotary",
                "rotary_dim": 16,
                "n_key_value_heads": 2,
                "final_rms": True,
                "model_name": "tiny-gated",
            }
        )
    raise UnknownModelError(f"Unknown tiny model {kind!r}; choose 'tiny' or 'tiny-gated'.")


def tiny_model(
    kind: str = "tiny", seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HookedTransformer:
    """A randomly initialised tiny model, seeded: two calls give identical weights.

    It is initialised in float32 and then cast, so a half-precision tiny model is the float32 one
    rounded, as a checkpoint loaded in half precision is.

    Args:
        kind: ``tiny`` or ``tiny-gated`` (see [`tiny_config`][workbench.models.tiny.tiny_config]).
        seed: The seed of the initialisation.
        device: Where the model goes.
        dtype: The model's dtype.
    """
    cfg = tiny_config(kind)
    cfg.seed = seed
    cfg.device = str(device)
    model = HookedTransformer(cfg, tokenizer=byte_tokenizer(), default_padding_side="right")
    set_source(model, ModelSource(spec=kind, name=kind, route="tiny", weights=f"random init, seed {seed}"))
    model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype)
