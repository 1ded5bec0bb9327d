"""Shared fixtures: tiny models built locally (seconds) and the real default model (e2e)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from workbench.models import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_gated():
    from workbench.models import load_model

    return load_model("tiny-gated")


@pytest.fixture(scope="session")
def bible():
    from workbench.corpus import BibleCorpus

    return BibleCorpus()


@pytest.fixture(scope="session")
def gemma():
    """The real default model (Gemma 3 270M, Q4_K_M build), loaded once per test session."""
    from workbench.models import load_model

    return load_model("gemma-3-270m")


def tiny_hf(kind: str):
    """A tiny randomly initialised Hugging Face model: ``gpt2``, ``llama`` or ``xglm`` (seeded)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, XGLMConfig, XGLMForCausalLM

    small = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=260, n_positions=128, n_embd=32, n_layer=2, n_head=4, **small))
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **small)
        return LlamaForCausalLM(cfg)
    cfg = XGLMConfig(vocab_size=260, d_model=32, ffn_dim=64, num_layers=2, attention_heads=4,
                     max_position_embeddings=128, decoder_start_token_id=1, **small)
    return XGLMForCausalLM(cfg)  # fmt: skip


def save_tiny_hf(kind: str, folder):
    """Save a tiny HF model with the byte tokenizer into ``folder``; return the HF model."""
    from workbench.models import byte_tokenizer

    hf = tiny_hf(kind).eval()
    hf.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return hf
