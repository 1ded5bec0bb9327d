"""The rows a transcoder trains on: blocks of documents' activations, shuffled, consumed in batches.

Documents are read in *blocks*: block ``k`` is the next ``block_documents`` of a seeded
permutation of the documents (a new permutation each pass). A block's MLP inputs and outputs
([`mlp_io`][workbench.clt.activations.mlp_io], BOS and padding dropped) are consumed in an order
shuffled with a seed of its own, in batches of ``batch_tokens`` rows; then the next block is read.
Memory is one block's activations, never the corpus's, and the state of the stream is two numbers
(block, row), so a resumed run reads exactly the rows an uninterrupted one would.

With ``reuse`` every document is one block, read once (the model's forward is the costly part)
and kept in half precision; each pass over it is a new seeded order of the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from workbench.clt.activations import document_rows
from workbench.clt.training.parallel import read_shared
from workbench.runs import distributed

if TYPE_CHECKING:
    from workbench.models.model import Model


class Schedule(Protocol):
    """What the stream reads of the training settings (read-only: the settings are frozen)."""

    @property
    def batch_tokens(self) -> int:
        """Rows per step."""
        ...

    @property
    def block_documents(self) -> int:
        """Documents per block."""
        ...

    @property
    def forward_tokens(self) -> int:
        """Padded tokens per forward batch."""
        ...

    @property
    def seed(self) -> int:
        """Seeds the document order and the row shuffles."""
        ...

    @property
    def reuse(self) -> bool:
        """Read every document once and keep the rows."""
        ...


class Position(Protocol):
    """Where the stream is: advanced in place as it yields."""

    block: int
    row: int


@dataclass
class Block:
    """One block's rows in reading order and the order they are consumed in.

    Attributes:
        x: MLP inputs (float32, or float16 when kept for reuse).
        y: MLP outputs, likewise.
        order: The shuffled order of the rows.
    """

    x: Float[torch.Tensor, "row layer d_model"]
    y: Float[torch.Tensor, "row layer d_model"]
    order: Int[torch.Tensor, " row"]

    def __len__(self) -> int:
        return len(self.order)

    def rows(
        self, start: int, end: int
    ) -> tuple[Float[torch.Tensor, "batch layer d_model"], Float[torch.Tensor, "batch layer d_model"]]:
        """Rows ``start:end`` of the shuffled order, in float32."""
        pick = self.order[start:end].to(self.x.device)
        return self.x[pick].float(), self.y[pick].float()


def block_documents(n_documents: int, size: int, block: int, seed: int) -> list[int]:
    """The document indices of block ``block``: consecutive slices of one seeded permutation per pass."""
    per_pass = math.ceil(n_documents / size)
    epoch, k = divmod(block, per_pass)
    order = torch.randperm(n_documents, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return order[k * size : (k + 1) * size]


def read_rows(
    model: Model,
    docs: list[Int[torch.Tensor, " pos"]],
    forward_tokens: int,
    layers: list[int] | None,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = False,
) -> tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]:
    """``docs``' rows in order (shared out over the ranks under ``torchrun``), in ``dtype``.

    Each forward batch is copied into tensors of every row made up front, so a half-precision read
    never holds all rows in float32, nor twice.
    """
    if distributed.world().size > 1:
        x, y = read_shared(model, docs, forward_tokens, layers)
        return x.to(dtype), y.to(dtype)
    total = sum(max(len(doc) - 1, 0) for doc in docs)  # BOS is dropped
    rows: list[torch.Tensor] = []
    at = 0
    with tqdm(total=total, desc="clt: reading activations", unit=" rows", disable=not show_progress) as bar:
        for x, y in document_rows(model, docs, forward_tokens, layers):
            if not rows:
                rows = [part.new_empty((total, *part.shape[1:]), dtype=dtype) for part in (x, y)]
            rows[0][at : at + len(x)], rows[1][at : at + len(x)] = x, y
            at += len(x)
            bar.update(len(x))
    if not rows:
        raise ValueError("The documents hold no rows (each is BOS alone): give documents with text.")
    return rows[0][:at], rows[1][:at]


def read_block(
    model: Model,
    documents: list[Int[torch.Tensor, " pos"]],
    settings: Schedule,
    block: int,
    layers: list[int] | None = None,
    kept: Block | None = None,
    show_progress: bool = False,
) -> Block:
    """Block ``block``'s rows (BOS and padding dropped), of every layer or of ``layers`` only.

    Args:
        model: The hooked model.
        documents: Token lists, BOS first.
        settings: The run's settings.
        block: The block.
        layers: Read only these layers (default: every one).
        kept: With ``settings.reuse``, the rows read before (they are not read again).
        show_progress: Show a progress bar while reading (the whole set, with ``reuse``).
    """
    order_seed = settings.seed * 1_000_003 + block + 1
    if settings.reuse and kept is not None:
        x, y = kept.x, kept.y
    elif settings.reuse:
        x, y = read_rows(model, documents, settings.forward_tokens, layers, torch.float16, show_progress)
    else:
        chosen = block_documents(len(documents), settings.block_documents, block, settings.seed)
        x, y = read_rows(model, [documents[i] for i in chosen], settings.forward_tokens, layers)
    return Block(x, y, torch.randperm(len(x), generator=torch.Generator().manual_seed(order_seed)))


def stream(
    model: Model,
    documents: list[Int[torch.Tensor, " pos"]],
    settings: Schedule,
    state: Position,
    first: Block,
    layers: list[int] | None = None,
) -> Iterator[tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]]:
    """Batches of ``(inputs, outputs)`` rows from ``state.block``/``state.row`` on, advancing the state as it yields.

    Args:
        model: The hooked model.
        documents: Token lists, BOS first.
        settings: The run's settings.
        state: Where the stream is; advanced in place.
        first: Block ``state.block``'s rows.
        layers: Read only these layers (default: every one).
    """
    block = first
    while True:
        while state.row + settings.batch_tokens <= len(block):
            start = state.row
            state.row += settings.batch_tokens
            yield block.rows(start, state.row)
        state.block, state.row = state.block + 1, 0
        block = read_block(model, documents, settings, state.block, layers, block)


__all__ = ["Block", "block_documents", "read_block", "read_rows", "stream"]
