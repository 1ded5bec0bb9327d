"""PLND per language: every neuron's importance, folded over a language's documents (docs/methods.md §4-5).

For each document the parallel importances
([`workbench.neurons.importance`][workbench.neurons.importance]) decide which neurons are
*activated* ([`Selection`][workbench.neurons.selection.Selection]: in the top fraction / top-k of
their layer and structure, or above a threshold epsilon).
[`language_importance`][workbench.neurons.plnd.language_importance] folds them, batch by batch and
over ``torchrun`` ranks, into one
[`ImportanceSummary`][workbench.neurons.plnd_summary.ImportanceSummary] per language; LAPE's
activation counts ([`workbench.neurons.lape`][workbench.neurons.lape]) come from the same forward
passes. Which neurons are specific to a language is then read from the summaries alone
([`workbench.neurons.plnd_sets`][workbench.neurons.plnd_sets]), without the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from workbench.data.batching import DEFAULT_BATCH_TOKENS, LengthPolicy, tokenize
from workbench.models.model import Model
from workbench.neurons.importance import DEFAULT_CHUNK_ELEMENTS, BatchImportance, iter_importance
from workbench.neurons.plnd_summary import ImportanceSummary
from workbench.neurons.selection import Selection
from workbench.neurons.sets import STRUCTURES, NeuronDims, check_structures, structure_size
from workbench.runs.distributed import all_reduce, shard


def descending_ranks(importance: Float[torch.Tensor, "batch layer neuron"]) -> Int[torch.Tensor, "batch layer neuron"]:
    """Rank of each neuron within its layer (0 = most important; ties in index order)."""
    order = importance.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order))
    return ranks


class _Accumulator:
    """Folds batches of per-document importances into an ``ImportanceSummary``."""

    def __init__(self, dims: NeuronDims, structures: list[str], selection: Selection, lape: bool):
        shape = {s: (dims.n_layers, structure_size(dims, s)) for s in structures}
        self.selection = selection
        self.total = {s: torch.zeros(shape[s], dtype=torch.float64) for s in structures}
        self.minimum = {s: torch.full(shape[s], math.inf) for s in structures}
        self.worst = {s: torch.zeros(shape[s], dtype=torch.int64) for s in structures}
        self.halves = {s: torch.zeros((2, *shape[s]), dtype=torch.int64) for s in structures}
        self.positive = torch.zeros(dims.n_layers, dims.d_mlp, dtype=torch.float64) if lape else None
        self.n_tokens = 0

    def add(self, part: BatchImportance) -> None:
        half = torch.tensor([i % 2 for i in part.index])
        self.n_tokens += int(part.n_tokens.sum())
        for s, imp in part.importance.items():
            ranks = descending_ranks(imp)
            self.total[s] += imp.sum(0, dtype=torch.float64)
            self.minimum[s] = torch.minimum(self.minimum[s], imp.min(0).values)
            self.worst[s] = torch.maximum(self.worst[s], ranks.max(0).values)
            active = self.selection.activated(imp, ranks).long()
            for h in (0, 1):
                self.halves[s][h] += active[half == h].sum(0)
        if self.positive is not None and part.positive is not None:
            self.positive += part.positive.sum(0, dtype=torch.float64)

    def merge(self) -> None:
        """Fold in what the other ranks found ([`workbench.runs.distributed`][workbench.runs.distributed]).

        Sums and counts add, minima and worst ranks take the extreme. Nothing to do in a world of
        one.
        """
        for s in self.total:
            all_reduce(self.total[s], "sum")
            all_reduce(self.minimum[s], "min")
            all_reduce(self.worst[s], "max")
            all_reduce(self.halves[s], "sum")
        if self.positive is not None:
            all_reduce(self.positive, "sum")
        self.n_tokens = int(all_reduce(torch.tensor([self.n_tokens]), "sum")[0])

    def summary(self, language: str, ids: Sequence[str], settings: dict[str, Any]) -> ImportanceSummary:
        return ImportanceSummary(
            language=language,
            ids=list(ids),
            n_tokens=self.n_tokens,
            total={s: t.numpy() for s, t in self.total.items()},
            minimum={s: m.numpy().astype(np.float32) for s, m in self.minimum.items()},
            worst_rank={s: w.numpy().astype(np.int32) for s, w in self.worst.items()},
            count_halves={s: h.numpy() for s, h in self.halves.items()},
            positive=None if self.positive is None else self.positive.numpy(),
            settings=settings,
        )


def language_importance(
    model: Model,
    language: str,
    texts: Sequence[str],
    ids: Sequence[str],
    selection: Selection = Selection(),
    structures: Sequence[str] = STRUCTURES,
    lape: bool = True,
    include_bos: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    on_too_long: LengthPolicy = "truncate",
    show_progress: bool = True,
) -> ImportanceSummary:
    """PLND (and LAPE counts) over one language's documents, summarised.

    Under ``torchrun`` each rank takes its share of the documents and the summaries merge exactly
    (sums within float rounding); every rank returns the whole summary.

    Args:
        model: The model.
        language: The documents' language.
        texts: The documents.
        ids: Their ids.
        selection: Which neurons count as activated for a document (the counts follow it).
        structures: Which structures to score.
        lape: Also count LAPE's positive activations.
        include_bos: Count the BOS position too.
        batch_tokens: Tokens per batch (padding included).
        chunk_elements: Floats per temporary of the torch backend of Q/K pattern changes.
        on_too_long: What to do with a document longer than the model's context.
        show_progress: Show a progress bar.

    Returns:
        The language's summary.
    """
    structures = check_structures(structures)
    tokens = tokenize(model, texts, ids, on_too_long=on_too_long)
    mine = shard(len(tokens))
    acc = _Accumulator(NeuronDims.of(model), structures, selection, lape)
    total = sum(len(tokens[i]) for i in mine)
    with tqdm(total=total, unit="tok", desc=f"plnd {language}", disable=not show_progress) as bar:
        parts = iter_importance(
            model, tokens, structures, lape, include_bos, batch_tokens, chunk_elements, documents=mine
        )
        for part in parts:
            acc.add(part)
            bar.update(sum(len(tokens[i]) for i in part.index))
    acc.merge()
    settings = {"selection": asdict(selection), "structures": structures, "lape": lape, "include_bos": include_bos}
    return acc.summary(language, ids, settings)


__all__ = ["descending_ranks", "language_importance"]
