"""Training a transcoder data-parallel under ``torchrun``: how the ranks split each block and each step.

Every rank trains the same transcoder on the same stream
([`workbench.clt.training.train`][workbench.clt.training.train]; the collectives are
[`workbench.runs.distributed`][workbench.runs.distributed]).

* Reading a block (the model's forward, the costly part): its documents in the order one
  process's length-sorted batches read them, rank ``r`` taking every ``W``-th from the ``r``-th
  (so the ranks' token counts are near equal); the rows are gathered back into that order on every
  rank, then shuffled with the same seed. Every rank holds the block one process would have (its
  numbers within float rounding: a document's forward ran in another padded batch), and so the
  same scales from the first block.
* A step: every rank takes the same batch of ``batch_tokens`` rows and computes the loss on its
  own contiguous share (``n_r`` rows, shares differing by at most one). The loss terms are means
  over rows, so the batch's gradient is the shares' gradients weighted by ``n_r / batch_tokens``,
  summed over ranks: one all-reduce of the flattened gradients before clipping and Adam, so the
  ranks' parameters stay identical. The log's mse, sparsity, dead and l0 are combined the same way.
* Rank 0 alone writes checkpoints and shows progress; a resume reads rank 0's checkpoint on every
  rank. The stream's state (block, row) does not depend on the world size, so a checkpoint resumes
  with any number of processes.

Equal means: a run of ``W`` processes gives one process's transcoder and log within float
rounding (sums in another order, activations computed in other batches), not bit for bit; a world of
one runs exactly the one-process code. The tests hold two gloo processes to one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int

from workbench.clt.activations import document_rows
from workbench.clt.training.loss import LossParts
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.runs import distributed

if TYPE_CHECKING:
    from workbench.models.model import Model


def read_shared(
    model: Model, docs: list[Int[torch.Tensor, " pos"]], forward_tokens: int, layers: list[int] | None
) -> tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]:
    """``docs``' rows in one process's order, each rank reading every ``W``-th document of it.

    One process's batches read the documents longest first, ties in block order; the rows are
    gathered back on every rank.
    """
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))  # plan_batches' order (a stable sort)
    w = distributed.world()
    shares = [order[rank :: w.size] for rank in range(w.size)]
    counts = [[max(len(docs[i]) - 1, 0) for i in share] for share in shares]  # rows: BOS dropped
    mine = [docs[i] for i in shares[w.rank]]  # longest first already: batched in this order
    # a rank without documents (a block smaller than the world) reads two tokens for the rows'
    # shape and dtype, and keeps none of them
    read = document_rows(model, mine or [docs[order[0]][:2]], forward_tokens, layers)
    inputs, outputs = (torch.cat(part) for part in zip(*read))
    if not mine:
        inputs, outputs = inputs[:0], outputs[:0]
    by_document: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    xs, ys = (gather_rows(part, [sum(c) for c in counts]) for part in (inputs, outputs))
    for share, count, x, y in zip(shares, counts, xs, ys):
        by_document.update(zip(share, zip(x.split(count), y.split(count))))
    return torch.cat([by_document[i][0] for i in order]), torch.cat([by_document[i][1] for i in order])


def gather_rows(rows: Float[torch.Tensor, "share ..."], counts: list[int]) -> list[Float[torch.Tensor, "share ..."]]:
    """Every rank's ``rows`` (rank ``r`` holding ``counts[r]`` of them), in rank order, on every rank.

    One tensor collective (padded to the longest), not a pickled object per rank.
    """
    longest = max(counts)
    padded = torch.cat([rows, rows.new_zeros(longest - len(rows), *rows.shape[1:])])
    parts = [torch.empty_like(padded) for _ in counts]
    torch.distributed.all_gather(parts, padded)
    return [part[:count] for part, count in zip(parts, counts)]


def share(
    x: Float[torch.Tensor, "row layer d_model"], y: Float[torch.Tensor, "row layer d_model"]
) -> tuple[Float[torch.Tensor, "share layer d_model"], Float[torch.Tensor, "share layer d_model"], float]:
    """This rank's contiguous share of a batch's rows and its weight (its rows over the batch's).

    The whole batch, weight 1, in a world of one.
    """
    w = distributed.world()
    if w.size == 1:
        return x, y, 1.0
    start, end = w.rank * len(x) // w.size, (w.rank + 1) * len(x) // w.size
    return x[start:end], y[start:end], (end - start) / len(x)


def combine_gradients(clt: CrossLayerTranscoder, weight: float) -> None:
    """Replace each rank's gradients by the batch's.

    The shares' gradients of their mean losses, weighted by their share of the rows and summed over
    ranks (one all-reduce of them all, flattened). The same parameters have gradients on every rank
    (those the loss reaches).
    """
    if distributed.world().size == 1:
        return
    grads = [p.grad for p in clt.parameters() if p.grad is not None]
    flat = distributed.all_reduce(torch.cat([g.flatten() for g in grads]) * weight)
    for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(part.view_as(grad))


def combine_log(parts: LossParts, weight: float) -> tuple[dict[str, float], list[float]]:
    """The step's log entry (mse, sparsity, dead, l0: means over rows) and L0 per layer, over the whole batch."""
    entry = {"mse": parts.mse, "sparsity": parts.sparsity, "dead": parts.dead, "l0": parts.l0}
    if distributed.world().size == 1:
        return entry, parts.l0_layers
    values = torch.tensor([*entry.values(), *parts.l0_layers], dtype=torch.float64)
    summed = distributed.all_reduce(values * weight).tolist()
    return dict(zip(entry, summed[: len(entry)])), summed[len(entry) :]


__all__ = ["combine_gradients", "combine_log", "gather_rows", "read_shared", "share"]
