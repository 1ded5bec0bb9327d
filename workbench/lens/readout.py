"""Reading residual streams out into vocabulary space, in row chunks.

With Gemma's 262,144-token vocabulary the unembedding is most of a forward pass and its
``[batch, pos, vocab]`` output is the largest tensor by far (512 tokens -> 512 MiB). These helpers
apply the final norm and the unembedding a chunk of rows at a time and reduce each chunk at once
(to a loss, a top-k, ...), so memory stays bounded. They also skip TransformerLens's per-call
transposed copy of ``W_U`` (``F.linear(x, W_U.T.contiguous())``, 671 MB for Gemma). Tests hold
the results equal to the model's own forward pass.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer
from transformer_lens.utilities.activation_functions import apply_softcap

DEFAULT_CHUNK_ROWS = 256


def logits_of_rows(model: HookedTransformer, normed: torch.Tensor) -> torch.Tensor:
    """Logits for already-normalised residual rows ``[rows, d_model]`` (bias and soft-cap included)."""
    logits = normed @ model.W_U
    if model.b_U is not None:
        logits += model.b_U
    return apply_softcap(logits, model.cfg.output_logits_soft_cap)


def next_token_losses(model, tokens: torch.Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """Cross-entropy (nats) of every next token: ``[batch, pos - 1]``, equal to
    ``F.cross_entropy(model(tokens)[:, :-1], tokens[:, 1:])`` position by position."""
    return next_token_predictions(model, tokens, chunk_rows)[0]


def next_token_predictions(
    model, tokens: torch.Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (nats) of every next token and the model's top-1 prediction there, both
    ``[batch, pos - 1]``, from one pass.

    Models other than ``HookedTransformer`` (the bridge route) take their own full forward pass.
    """
    targets = tokens[:, 1:]
    if not isinstance(model, HookedTransformer):
        logits = model(tokens, return_type="logits")[:, :-1].float()
        losses = torch.logsumexp(logits, -1) - logits.gather(-1, targets[..., None])[..., 0]
        return losses, logits.argmax(-1)
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    rows = resid[:, :-1].reshape(-1, resid.shape[-1])
    flat_targets = targets.reshape(-1)
    losses = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
    predicted = torch.empty(rows.shape[0], dtype=torch.long, device=rows.device)
    for start in range(0, rows.shape[0], chunk_rows):
        stop = start + chunk_rows
        logits = logits_of_rows(model, rows[start:stop]).float()
        losses[start:stop] = torch.logsumexp(logits, -1) - logits.gather(-1, flat_targets[start:stop, None])[:, 0]
        predicted[start:stop] = logits.argmax(-1)
    return losses.view_as(targets), predicted.view_as(targets)


def mean_next_token_loss(
    model, tokens: torch.Tensor, mask: torch.Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> torch.Tensor:
    """Differentiable mean cross-entropy over the real next tokens of a padded batch.

    For training: the unembedding runs a chunk of rows at a time under activation
    checkpointing, so only one chunk's ``[rows, vocab]`` logits exist at once, forward or
    backward. Equal to ``F.cross_entropy`` of the full logits over positions where
    ``mask[:, 1:]`` is set.
    """
    from torch.utils.checkpoint import checkpoint

    real = mask[:, 1:].bool().reshape(-1)
    targets = tokens[:, 1:].reshape(-1)[real]
    if not isinstance(model, HookedTransformer):
        logits = model(tokens, return_type="logits")[:, :-1].float().reshape(-1, model.cfg.d_vocab)[real]
        return torch.nn.functional.cross_entropy(logits, targets)
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    rows = resid[:, :-1].reshape(-1, resid.shape[-1])[real]

    def chunk_loss(chunk: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        logits = logits_of_rows(model, chunk).float()
        return torch.nn.functional.cross_entropy(logits, chunk_targets, reduction="sum")

    total = rows.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk_rows):
        stop = start + chunk_rows
        total = total + checkpoint(chunk_loss, rows[start:stop], targets[start:stop], use_reentrant=False)
    return total / max(int(real.sum()), 1)
