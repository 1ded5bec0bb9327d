"""Tokenize documents and pack them into padded batches under a token budget.

Batches are right-padded. With causal attention a real token never attends to a pad that comes
after it, so the outputs at real positions equal those of the document run alone (a test holds
this); analyses only need to drop the pad positions, given by ``mask``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int

from workbench.errors import EmptyCorpusError, TextTooLongError
from workbench.models.model import Model

LengthPolicy = Literal["truncate", "error"]
"""What to do with a text longer than the model's context: cut it (with a warning), or stop."""
DEFAULT_BATCH_TOKENS = 512
"""Padded tokens per forward batch, unless the run says otherwise."""


def tokenize(
    model: Model,
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    max_tokens: int | None = None,
    on_too_long: LengthPolicy = "truncate",
) -> list[Int[torch.Tensor, " pos"]]:
    """Token ids (1-D, BOS first, on the CPU) for each text.

    Args:
        model: The model whose tokenizer is used.
        texts: The texts.
        ids: Their ids, for messages (default: their positions).
        max_tokens: The longest a text may be (default: the model's context ``n_ctx``).
        on_too_long: ``truncate``: longer texts are cut, with one warning that counts them;
            ``error``: they are refused.

    Raises:
        EmptyCorpusError: A text is empty.
        TextTooLongError: A text is too long, under ``on_too_long="error"``; the message names
            them.
    """
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    empty = [i for i, t in zip(ids, texts) if not t or not t.strip()]
    if empty:
        raise EmptyCorpusError(f"{len(empty)} empty text(s), e.g. id {empty[0]!r}; drop them first.")
    limit = max_tokens or model.cfg.n_ctx
    out, too_long = [], []
    for doc_id, text in zip(ids, texts):
        toks = model.to_tokens(text, prepend_bos=True, truncate=False)[0].cpu()
        if len(toks) > limit:
            too_long.append((doc_id, len(toks)))
            toks = toks[:limit]
        out.append(toks)
    if too_long:
        listing = ", ".join(f"{i} ({n} tokens)" for i, n in too_long[:5])
        if on_too_long == "error":
            raise TextTooLongError(
                f"{len(too_long)} text(s) exceed {limit} tokens: {listing}. Shorten them, raise "
                "max_tokens within the model's context, or use on_too_long='truncate'."
            )
        warnings.warn(f"Truncated {len(too_long)} text(s) to {limit} tokens: {listing}.", stacklevel=2)
    return out


def plan_batches(
    lengths: Sequence[int], batch_tokens: int = DEFAULT_BATCH_TOKENS, max_batch_size: int = 64
) -> list[list[int]]:
    """Group document indices into batches whose padded size (rows x longest) fits ``batch_tokens``.

    At most ``max_batch_size`` documents go in one batch.

    Documents are sorted by length so little is wasted on padding; a document longer than the
    budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass
class Batch:
    """Padded token ids of some documents.

    Attributes:
        index: The documents' indices (in the token lists the batches were made from).
        tokens: Their token ids, right-padded.
        mask: 1 on real tokens, 0 on padding.
    """

    index: list[int]
    tokens: Int[torch.Tensor, "batch pos"]
    mask: Int[torch.Tensor, "batch pos"]

    @property
    def n_tokens(self) -> int:
        """The number of real (unpadded) tokens."""
        return int(self.mask.sum())


def pad(
    token_lists: Sequence[Int[torch.Tensor, " pos"]], pad_id: int
) -> tuple[Int[torch.Tensor, "batch pos"], Int[torch.Tensor, "batch pos"]]:
    """Right-pad 1-D token tensors into ``[batch, longest]`` ids and a 0/1 mask."""
    longest = max(len(t) for t in token_lists)
    tokens = torch.full((len(token_lists), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), longest), dtype=torch.long)
    for row, toks in enumerate(token_lists):
        tokens[row, : len(toks)] = toks
        mask[row, : len(toks)] = 1
    return tokens, mask


def iter_batches(
    token_lists: Sequence[Int[torch.Tensor, " pos"]],
    pad_id: int,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    device: str | torch.device = "cpu",
    documents: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Padded batches over ``token_lists``, moved to ``device``.

    Batches are planned by [`plan_batches`][workbench.data.batching.plan_batches]; ``Batch.index``
    counts in ``token_lists``.

    Args:
        token_lists: The documents' token ids.
        pad_id: The id padding is filled with.
        batch_tokens: The padded size a batch may reach.
        device: Where the batches go.
        documents: Only these documents (indices into ``token_lists``, e.g. this process's
            [`shard`][workbench.runs.distributed.shard]), when given.
    """
    chosen = range(len(token_lists)) if documents is None else documents
    for planned in plan_batches([len(token_lists[i]) for i in chosen], batch_tokens):
        index = [chosen[i] for i in planned]
        tokens, mask = pad([token_lists[i] for i in index], pad_id)
        yield Batch(index, tokens.to(device), mask.to(device))


def pad_id_of(model: Model) -> int:
    """The tokenizer's pad id (falling back to EOS, then 0): padding never reaches the results."""
    tok = model.tokenizer
    for candidate in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def counted_positions(
    mask: Int[torch.Tensor, "batch pos"], include_bos: bool = False
) -> Float[torch.Tensor, "batch pos"]:
    """Float weights: 1 on real tokens that count, 0 on padding (and on BOS unless included)."""
    weights = mask.to(torch.float32).clone()
    if not include_bos:
        weights[:, 0] = 0.0
    return weights
