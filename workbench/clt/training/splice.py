"""A short end-to-end fine-tune of a trained transcoder through the spliced model.

Trained layer by layer on the model's own activations, a transcoder's errors compound once every
covered MLP is replaced: each layer reads a residual stream that the earlier layers' errors have
moved, a distribution it never saw. This fine-tune trains the decoders (``W_dec``, ``b_dec`` and a
skip transcoder's ``W_skip``) on the spliced model's own forward pass
([`replacement`][workbench.clt.quality.replacement], BOS kept), against two terms:

* the KL divergence of the spliced model's next-token distribution from the original model's, per
  token (what the splice costs downstream, the quantity the fine-tune is for);
* each covered layer's normalised reconstruction error of the MLP output the model computes on the
  spliced stream, weighted by ``mse`` (so a layer keeps standing in for its own MLP).

The encoders and thresholds stay as trained, so every feature fires on the same tokens as before:
L0 and the dead share do not move, and a feature's meaning (what it reads) is kept; only what it
writes changes. This is the end-to-end objective of Braun et al. 2024 ("Identifying functionally
important features with end-to-end sparse dictionary learning") applied as a short fine-tune.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import nn
from tqdm.auto import tqdm

from workbench.clt.quality import replacement
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.batching import Batch, iter_batches, pad_id_of
from workbench.models.model import Model, model_device


@dataclass(frozen=True)
class SpliceSettings:
    """How long and how hard the spliced fine-tune runs.

    Attributes:
        steps: Optimiser steps (0: no fine-tune).
        lr: Adam's learning rate.
        batch_tokens: Padded tokens per step (the logits of a 262k-token vocabulary take 1 GB per 1,024 tokens).
        mse: The weight of the layers' mean normalised reconstruction error beside the KL.
        seed: The order of the documents.
    """

    steps: int = 0
    lr: float = 1e-4
    batch_tokens: int = 1024
    mse: float = 1.0
    seed: int = 0


def decoder_parameters(clt: CrossLayerTranscoder) -> list[nn.Parameter]:
    """What the fine-tune trains: the decoders, the decoder bias and the skip (never the encoders)."""
    params = [*clt.W_dec, clt.b_dec]
    return params if clt.W_skip is None else [*params, clt.W_skip]


@contextmanager
def trained_only(model: Model, clt: CrossLayerTranscoder) -> Iterator[list[nn.Parameter]]:
    """The decoder parameters with gradients on and every other parameter off; the flags are restored after."""
    modules = list(model.parameters()) + list(clt.parameters())
    flags = [p.requires_grad for p in modules]
    for p in modules:
        p.requires_grad_(False)
    params = decoder_parameters(clt)
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for p, flag in zip(modules, flags):
            p.requires_grad_(flag)


def splice_step_loss(model: Model, clt: CrossLayerTranscoder, batch: Batch, mse: float) -> tuple[torch.Tensor, dict]:
    """The fine-tune's loss on one batch, and its terms (KL in nats per token, mean normalised error)."""
    real = batch.mask.bool().clone()
    real[:, 0] = False  # BOS keeps the model's own MLP output; its prediction is the model's
    with torch.no_grad():
        reference = torch.log_softmax(model(batch.tokens).float(), dim=-1)[real]
    errors: list[torch.Tensor] = []

    def measured(layer: int, written: torch.Tensor, out: torch.Tensor) -> None:
        target = out[real].float().detach()  # the MLP's answer on this stream: a target, not a path
        residual = written[real].float() - target
        errors.append(residual.pow(2).sum() / (target - target.mean(0)).pow(2).sum().clamp_min(1e-8))

    with replacement(model, clt, keep_bos=True, on_write=measured) as spliced:
        logits = torch.log_softmax(spliced(batch.tokens).float(), dim=-1)[real]
    kl = F.kl_div(logits, reference, log_target=True, reduction="batchmean")  # KL(model || spliced) per token
    error = torch.stack(errors).mean()
    return kl + mse * error, {"kl": float(kl.detach()), "fvu": float(error.detach())}


def finetune_spliced(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: list[Int[torch.Tensor, " pos"]],
    settings: SpliceSettings,
    show_progress: bool = True,
) -> list[dict]:
    """Fine-tune ``clt``'s decoders in place through the spliced model; the log, one entry per step.

    Args:
        model: The model the transcoder replaces (its weights are not changed).
        clt: The trained transcoder.
        documents: Training documents (token lists, BOS first), cycled in a seeded order.
        settings: Steps, learning rate, batch size and the reconstruction term's weight.
        show_progress: Show a progress bar.
    """
    if settings.steps == 0:
        return []
    order = list(range(len(documents)))
    random.Random(settings.seed).shuffle(order)
    shuffled = [documents[i] for i in order]
    log: list[dict] = []
    clt.train()
    with trained_only(model, clt) as params:
        optimizer = torch.optim.Adam(params, lr=settings.lr)
        batches = _cycle(shuffled, pad_id_of(model), settings.batch_tokens, model_device(model))
        bar = tqdm(range(settings.steps), desc="splice fine-tune", unit="step", disable=not show_progress)
        for step in bar:
            started = time.perf_counter()
            loss, terms = splice_step_loss(model, clt, next(batches), settings.mse)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.append({"step": step, **terms, "seconds": time.perf_counter() - started})
            bar.set_postfix(kl=f"{terms['kl']:.3f}", fvu=f"{terms['fvu']:.3f}")
    clt.eval()
    return log


def _cycle(documents: list[torch.Tensor], pad_id: int, batch_tokens: int, device: torch.device | str) -> Iterator:
    """The documents' batches, over and over."""
    while True:
        yield from iter_batches(documents, pad_id, batch_tokens, device)


__all__ = ["SpliceSettings", "decoder_parameters", "finetune_spliced", "splice_step_loss", "trained_only"]
