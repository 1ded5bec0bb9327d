"""Shared fixtures: tiny models built locally (seconds) and the real default model (e2e)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from workbench.models.loading import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_gated():
    from workbench.models.loading import load_model

    return load_model("tiny-gated")


@pytest.fixture(scope="session")
def bible():
    from workbench.data.corpus import BibleCorpus

    return BibleCorpus()


@pytest.fixture(scope="session")
def gemma():
    """The real default model (Gemma 3 270M, Q4_K_M build), loaded once per test session."""
    from workbench.models.loading import load_model

    return load_model("gemma-3-270m")


BRIDGED = "gpt-bigcode"  # a family only TransformerBridge loads (GPT-2 style, multi-query attention)


def save_tiny_hf(kind: str, folder):
    """Save a tiny HF model with the byte tokenizer into ``folder``; return the HF model. ``kind``:
    a family of :data:`workbench.models.families.FAMILIES`, or :data:`BRIDGED`."""
    from workbench.models.families import save_family
    from workbench.models.tiny import byte_tokenizer

    if kind != BRIDGED:
        return save_family(kind, folder)
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(0)
    config = GPTBigCodeConfig(
        vocab_size=260,
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=4,
        multi_query=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    hf = GPTBigCodeForCausalLM(config).eval()
    hf.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return hf


def spread_clt(
    n_layers: int = 2,
    d_model: int = 64,
    n_features: int = 32,
    seed: int = 3,
    per_layer: bool = False,
    b_dec: bool = False,
    **shape,
):
    """A float64 transcoder for a tiny model whose features are active and unevenly scaled: random
    encoder biases, a low threshold, decoders scaled up, different input and output scales per
    layer (and, with ``b_dec``, a random decoder bias), so tests exercise every term. ``shape``:
    more of :class:`CLTConfig` (``window``, ``layers``)."""
    import math

    import torch

    from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

    config = CLTConfig(n_layers=n_layers, d_model=d_model, n_features=n_features, per_layer=per_layer, **shape)
    clt = CrossLayerTranscoder(config, seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clt.b_enc.copy_(torch.randn(n_layers, n_features, generator=g, dtype=torch.float64) * 0.3)
        if b_dec:
            clt.b_dec.copy_(torch.randn(n_layers, d_model, generator=g, dtype=torch.float64) * 0.1)
        clt.log_threshold.fill_(math.log(0.05))
        for w in clt.W_dec:
            w.mul_(5.0)
        clt.in_scale.copy_(torch.tensor([0.7, 1.3, 0.9][:n_layers]))
        clt.out_scale.copy_(torch.tensor([2.0, 0.5, 1.5][:n_layers]))
    clt.clear_uncovered()
    return clt


def known_skip_clt(
    n_layers: int, d_model: int, n_features: int, model: str, seed: int = 1, skip_scale: float = 0.2, **kind
):
    """A float32 skip transcoder with every parameter set: random encoder and decoder biases, a
    random skip (entries of size ``skip_scale``), thresholds in [0.01, 0.3], input scales powers of
    two and output scales other than 1, so a file format's reader and writer meet every term.
    ``kind``: more of :class:`CLTConfig` (``per_layer``, ``window``, ``layers``)."""
    import torch

    from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

    L, D, F = n_layers, d_model, n_features
    clt = CrossLayerTranscoder(CLTConfig(L, D, F, model=model, skip=True, **kind), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        clt.b_enc.copy_(torch.randn(L, F, generator=g) * 0.3)
        clt.b_dec.copy_(torch.randn(L, D, generator=g) * 0.1)
        clt.log_threshold.copy_((torch.rand(L, F, generator=g) * 0.29 + 0.01).log())
        clt.in_scale.copy_(2.0 ** torch.randint(-2, 3, (L,), generator=g).float())
        clt.out_scale.copy_(torch.rand(L, generator=g) * 2 + 0.25)
        assert clt.W_skip is not None
        clt.W_skip.copy_(torch.randn(L, D, D, generator=g) * skip_scale)
        clt.clear_uncovered()
    return clt.eval()
