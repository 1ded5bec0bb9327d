"""Reading residual streams out into vocabulary space, in row chunks.

With Gemma's 262,144-token vocabulary the unembedding is most of a forward pass and its
``[batch, pos, vocab]`` output is the largest tensor by far (512 tokens -> 512 MiB). These helpers
apply the final norm and the unembedding a chunk of rows at a time and reduce each chunk at once
(to a loss, a top-k, ...), so memory stays bounded. They also skip TransformerLens's per-call
transposed copy of ``W_U`` (``F.linear(x, W_U.T.contiguous())``, 671 MB for Gemma). Tests hold
the results equal to the model's own forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.utilities.activation_functions import apply_softcap

from workbench.models.model import Model

DEFAULT_CHUNK_ROWS = 256
"""Residual rows unembedded at once."""


def wide(x: Float[torch.Tensor, "*shape"]) -> Float[torch.Tensor, "*shape"]:
    """``x`` in float32, or as it is when wider.

    For a half-precision model's values, before they are summed or turned into probabilities.
    """
    return x.to(torch.promote_types(x.dtype, torch.float32))


def final_normed(model: Model, resid: Float[torch.Tensor, "*rows d_model"]) -> Float[torch.Tensor, "*rows d_model"]:
    """``resid`` through the model's final norm (as it is for a model without one)."""
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    return resid


def logits_of_rows(model: Model, normed: Float[torch.Tensor, "row d_model"]) -> Float[torch.Tensor, "row d_vocab"]:
    """Logits for already-normalised residual rows (bias and soft-cap included)."""
    logits = normed @ model.W_U
    if model.b_U is not None:
        logits += model.b_U
    return apply_softcap(logits, model.cfg.output_logits_soft_cap)


def next_token_losses(
    model: Model, tokens: Int[torch.Tensor, "batch pos"], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Float[torch.Tensor, "batch pos-1"]:
    """Cross-entropy (nats) of every next token.

    Equal to ``F.cross_entropy(model(tokens)[:, :-1], tokens[:, 1:])`` position by position.
    """
    return next_token_predictions(model, tokens, chunk_rows)[0]


def next_token_predictions(
    model: Model, tokens: Int[torch.Tensor, "batch pos"], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[Float[torch.Tensor, "batch pos-1"], Int[torch.Tensor, "batch pos-1"]]:
    """Cross-entropy (nats) of every next token and the model's top-1 prediction there, from one pass.

    Models other than ``HookedTransformer`` (the bridge route) take their own full forward pass.

    Args:
        model: The model.
        tokens: Token ids.
        chunk_rows: Rows unembedded at once.

    Returns:
        ``(losses, predicted)``: at each position but the last, the loss of the next token and
        the model's top-1 token.
    """
    targets = tokens[:, 1:]
    if not isinstance(model, HookedTransformer):
        logits = model(tokens, return_type="logits")[:, :-1].float()
        losses = torch.logsumexp(logits, -1) - logits.gather(-1, targets[..., None])[..., 0]
        return losses, logits.argmax(-1)
    resid = final_normed(model, model(tokens, stop_at_layer=model.cfg.n_layers))
    rows = resid[:, :-1].reshape(-1, resid.shape[-1])
    flat_targets = targets.reshape(-1).to(rows.device)  # the last block's device, when layers are split
    losses = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
    predicted = torch.empty(rows.shape[0], dtype=torch.long, device=rows.device)
    for start in range(0, rows.shape[0], chunk_rows):
        stop = start + chunk_rows
        logits = logits_of_rows(model, rows[start:stop]).float()
        losses[start:stop] = torch.logsumexp(logits, -1) - logits.gather(-1, flat_targets[start:stop, None])[:, 0]
        predicted[start:stop] = logits.argmax(-1)
    return losses.view_as(targets), predicted.view_as(targets)


def mean_next_token_loss(
    model: Model,
    tokens: Int[torch.Tensor, "batch pos"],
    mask: Int[torch.Tensor, "batch pos"] | Bool[torch.Tensor, "batch pos"],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Float[torch.Tensor, ""]:
    """Differentiable mean cross-entropy over the real next tokens of a padded batch.

    For training: the unembedding runs a chunk of rows at a time under activation
    checkpointing, so only one chunk's ``[rows, vocab]`` logits exist at once, forward or
    backward. Equal to ``F.cross_entropy`` of the full logits over positions where
    ``mask[:, 1:]`` is set.

    Args:
        model: The model.
        tokens: Token ids, padded.
        mask: 1 (or True) on real tokens.
        chunk_rows: Rows unembedded at once.

    Returns:
        The mean loss, a scalar.
    """
    from torch.utils.checkpoint import checkpoint

    real = mask[:, 1:].bool().reshape(-1)
    targets = tokens[:, 1:].reshape(-1)[real]
    if not isinstance(model, HookedTransformer):
        logits = model(tokens, return_type="logits")[:, :-1].float().reshape(-1, model.cfg.d_vocab)[real]
        return torch.nn.functional.cross_entropy(logits, targets)
    resid = final_normed(model, model(tokens, stop_at_layer=model.cfg.n_layers))
    rows = resid[:, :-1].reshape(-1, resid.shape[-1])[real.to(resid.device)]  # the last block's, if split
    targets = targets.to(rows.device)

    def chunk_loss(chunk: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        logits = logits_of_rows(model, chunk).float()
        return torch.nn.functional.cross_entropy(logits, chunk_targets, reduction="sum")

    total = rows.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk_rows):
        stop = start + chunk_rows
        total = total + checkpoint(chunk_loss, rows[start:stop], targets[start:stop], use_reentrant=False)
    return total / max(int(real.sum()), 1)


def last_logits(
    model: Model,
    tokens: Int[torch.Tensor, "batch pos"],
    past_kv_cache: TransformerLensKeyValueCache | None = None,
) -> Float[torch.Tensor, "batch d_vocab"]:
    """The next-token logits at the last position of ``tokens``.

    The blocks run over every given position; the final norm and the unembedding (262k columns
    on Gemma) only at the last. A model loaded through TransformerBridge runs its own whole
    forward.

    Args:
        model: The model.
        tokens: Token ids; with ``past_kv_cache``, the new positions only.
        past_kv_cache: A TransformerLens key-value cache of the positions before ``tokens``.

    Returns:
        The logits at the last position.
    """
    if not isinstance(model, HookedTransformer):
        return model(tokens, return_type="logits")[:, -1]
    extra = {}
    if past_kv_cache is not None:  # every position is real: never let the tokenizer guess pads
        extra = {"past_kv_cache": past_kv_cache, "attention_mask": torch.ones_like(tokens)}
    resid = model(tokens, stop_at_layer=model.cfg.n_layers, **extra)[:, -1]
    return logits_of_rows(model, final_normed(model, resid))


@torch.no_grad()
def greedy(
    model: Model,
    prompts: Int[torch.Tensor, "batch pos"],
    new_tokens: int,
    reduce: Callable[[Float[torch.Tensor, "batch d_vocab"]], torch.Tensor] | None = None,
    cache: bool = True,
) -> tuple[Int[torch.Tensor, "batch new_tokens"], torch.Tensor | None]:
    """Greedy continuation of equal-length ``prompts`` under the hooks active now.

    With ``cache`` (HookedTransformer only) each step runs the new token alone against a
    key-value cache: the same numbers as re-running the whole sequence (tested), for hooks that
    act on each position by itself, as every workbench intervention does.

    Args:
        model: The model.
        prompts: The prompts' token ids.
        new_tokens: How many tokens to generate.
        reduce: A reduction of each step's next-token distribution ``probs [batch, d_vocab]``;
            only the reductions are kept.
        cache: Run each step against a key-value cache.

    Returns:
        The generated ids ``[batch, new_tokens]`` and, if ``reduce`` is given, the reductions
        stacked to ``[batch, new_tokens, ...]`` (else None).
    """
    cached = cache and isinstance(model, HookedTransformer)
    kv = TransformerLensKeyValueCache.init_cache(model.cfg, prompts.device, prompts.shape[0]) if cached else None
    sequence, step, measures = prompts, prompts, []
    for _ in range(new_tokens):
        logits = last_logits(model, step, kv)
        if reduce is not None:
            measures.append(reduce(torch.softmax(wide(logits), -1)))
        chosen = logits.argmax(-1, keepdim=True).to(sequence.device)
        sequence = torch.cat([sequence, chosen], dim=1)
        step = chosen if cached else sequence
    generated = sequence[:, prompts.shape[1] :]
    return generated, (torch.stack(measures, dim=1) if measures else None)
