"""Runs that outgrow one machine: ``torch.distributed`` under ``torchrun``.

Documents are split over ranks, and summaries merged exactly. Every rank runs the same job
(``torchrun --nproc-per-node N $(which workbench) run ...``). An analysis that splits its work
takes document ``i`` on rank ``i % world_size`` ([`shard`][workbench.runs.distributed.shard]) and
merges what the ranks found with collectives: sums, minima, maxima and counts
([`all_reduce`][workbench.runs.distributed.all_reduce]), per-document records gathered back into
document order ([`gather_in_order`][workbench.runs.distributed.gather_in_order],
[`all_gather`][workbench.runs.distributed.all_gather]). A sum is then the same numbers added in
another order (equal within float rounding), minima, maxima and counts are equal exactly.

Rank 0 alone reads and writes the run folder: it decides whether a part can be reused and
broadcasts its answer and what it loaded ([`from_main`][workbench.runs.distributed.from_main]), so
every rank takes the same path through the job and meets the others at the same collectives. Without ``torchrun`` (no
``WORLD_SIZE`` in the environment) nothing here does anything: one process, world of one.

The process group uses gloo on CPUs and nccl on GPUs, each rank on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist

T = TypeVar("T")
OPS = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
"""The reductions [`all_reduce`][workbench.runs.distributed.all_reduce] takes, by name."""


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes (0 of 1 without ``torchrun``).

    Attributes:
        rank: This process's rank.
        size: The number of processes.
    """

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that reads and writes the run folder."""
        return self.rank == 0


def world() -> World:
    """The current world: the process group's, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_environment(device: str | None = None) -> World:
    """Join the process group ``torchrun`` describes in the environment (once).

    A world of one when there is none. On GPUs each rank takes ``cuda:LOCAL_RANK`` and the nccl
    backend.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return world()
    cuda = device is not None and str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return world()


def local_device(device: str) -> str:
    """``cuda`` becomes this rank's GPU under ``torchrun``; other devices stay as they are."""
    if device == "cuda" and world().size > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shard(n: int) -> list[int]:
    """The documents (of ``n``) this rank takes: every ``size``-th, starting at its rank."""
    w = world()
    return list(range(w.rank, n, w.size))


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over every rank (``sum``, ``min`` or ``max``), in place; returned."""
    if world().size == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(f"cuda:{torch.cuda.current_device()}")
        dist.all_reduce(on_gpu, OPS[op])
        return tensor.copy_(on_gpu.cpu())
    dist.all_reduce(tensor, OPS[op])
    return tensor


def all_gather(value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    w = world()
    if w.size == 1:
        return [value]
    gathered: list[T | None] = [None] * w.size
    dist.all_gather_object(gathered, value)
    return cast(list[T], gathered)  # every rank filled its place


def gather_in_order(records: list[T], n: int) -> list[T]:
    """Per-document records of [`shard`][workbench.runs.distributed.shard]'s documents, gathered in document order.

    From every rank into the order ``0..n-1``, on every rank.
    """
    w = world()
    out: list[T | None] = [None] * n
    for rank, part in enumerate(all_gather(list(records))):
        for i, record in zip(range(rank, n, w.size), part):
            out[i] = record
    return cast(list[T], out)  # every document is some rank's


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its value (or its error) given to every rank."""
    w = world()
    if w.size == 1:
        return compute()
    box: list[tuple[str, Any] | None] = [None]
    if w.is_main:
        try:
            box[0] = ("value", compute())
        except Exception as error:  # handed to every rank, raised there too
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0)
    kind, value = cast(tuple[str, Any], box[0])  # the broadcast filled it on every rank
    if kind == "error":
        raise cast(Exception, value)
    return cast(T, value)


def on_main(action: Callable[[], None]) -> None:
    """Do ``action`` (a write) on rank 0 only."""
    if world().is_main:
        action()
