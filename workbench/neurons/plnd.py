"""PLND per language: which neurons matter for every document of a language (docs/methods.md §4-5).

For each document the parallel importances
([`workbench.neurons.importance`][workbench.neurons.importance]) decide which neurons are
*activated* ([`Selection`][workbench.neurons.selection.Selection]: in the top fraction / top-k of
their layer and structure, or above a threshold epsilon); a neuron is *specific* to a language
when it is activated for all (or a chosen fraction of) the language's documents; optionally sets
are made *exclusive* by removing the neurons specific to every language.

Per language only summaries are kept
([`ImportanceSummary`][workbench.neurons.plnd.ImportanceSummary]), never per-document arrays:
the mean, minimum and worst rank of every neuron over documents, and how many documents
activated it, overall and in two disjoint halves of the documents (even and odd positions),
which measure how stable the sets are when the sample changes. The minimum and worst rank let
the "every document" sets be re-selected for any threshold or k without rerunning the model.
LAPE's activation counts ([`workbench.neurons.lape`][workbench.neurons.lape]) come from the same
forward passes.

[`PLNDResult`][workbench.neurons.plnd.PLNDResult] saves the selected sets as JSON and the
summaries as safetensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from safetensors.numpy import load_file, save
from tqdm.auto import tqdm

from workbench.data.batching import DEFAULT_BATCH_TOKENS, LengthPolicy, tokenize
from workbench.models.model import Model
from workbench.neurons.importance import DEFAULT_CHUNK_ELEMENTS, BatchImportance, iter_importance
from workbench.neurons.lape import LapeOptions, lape_sets
from workbench.neurons.selection import RULES, SET_KINDS, Selection
from workbench.neurons.sets import STRUCTURES, NeuronDims, NeuronSet, check_structures, structure_size
from workbench.runs.distributed import all_reduce, shard
from workbench.runs.results import Result, atomic_write_bytes


def descending_ranks(importance: Float[torch.Tensor, "batch layer neuron"]) -> Int[torch.Tensor, "batch layer neuron"]:
    """Rank of each neuron within its layer (0 = most important; ties in index order)."""
    order = importance.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order))
    return ranks


@dataclass
class ImportanceSummary:
    """One language's importances summarised over its documents.

    Attributes:
        language: The language.
        ids: Its documents' ids, in order.
        n_tokens: The tokens counted.
        total: Per structure, each neuron's importance summed over documents.
        minimum: Per structure, each neuron's least importance over documents.
        worst_rank: Per structure, each neuron's highest rank over documents (0 = most important).
        count_halves: Per structure, the documents activating each neuron, in the even and the odd
            halves of the documents.
        positive: Tokens on which each FFN neuron's activation is positive (LAPE; None unless
            counted).
        settings: How the summary was made: selection, structures, ``lape``, ``include_bos``.
    """

    language: str
    ids: list[str]
    n_tokens: int
    total: dict[str, Float[np.ndarray, "layer neuron"]]
    minimum: dict[str, Float[np.ndarray, "layer neuron"]]
    worst_rank: dict[str, Int[np.ndarray, "layer neuron"]]
    count_halves: dict[str, Int[np.ndarray, "2 layer neuron"]]
    positive: Float[np.ndarray, "layer d_mlp"] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_documents(self) -> int:
        """The documents summarised."""
        return len(self.ids)

    @property
    def count(self) -> dict[str, Int[np.ndarray, "layer neuron"]]:
        """Documents activating each neuron (under the selection the summary was made with)."""
        return {s: h.sum(0, dtype=np.int64) for s, h in self.count_halves.items()}

    def mean(self, structure: str) -> Float[np.ndarray, "layer neuron"]:
        """Each neuron's mean importance over documents."""
        return self.total[structure] / max(1, self.n_documents)

    def half_sizes(self) -> tuple[int, int]:
        """Documents in the even and the odd half."""
        return (self.n_documents + 1) // 2, self.n_documents // 2

    def save(self, path: Path) -> None:
        """Write the summary as safetensors (arrays compacted, the rest as metadata)."""
        arrays = {}
        for name in ("total", "minimum", "worst_rank", "count_halves"):
            for s, a in getattr(self, name).items():
                arrays[f"{name}.{s}"] = _compact(a)
        if self.positive is not None:
            arrays["positive"] = _compact(self.positive)
        meta = {
            "language": self.language,
            "ids": "\n".join(self.ids),
            "n_tokens": str(self.n_tokens),
            "settings": json.dumps(self.settings),
        }
        atomic_write_bytes(Path(path), save(arrays, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> ImportanceSummary:
        """The summary [`save`][workbench.neurons.plnd.ImportanceSummary.save] wrote."""
        with safe_open(str(path), "np") as fh:
            meta = fh.metadata()
        arrays = load_file(str(path))
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key in sorted(k for k in arrays if "." in k):
            name, s = key.split(".", 1)
            groups.setdefault(name, {})[s] = arrays[key]
        groups = {name: {s: g[s] for s in check_structures(g)} for name, g in groups.items()}
        return cls(
            language=meta["language"],
            ids=meta["ids"].split("\n") if meta["ids"] else [],
            n_tokens=int(meta["n_tokens"]),
            positive=arrays.get("positive"),
            settings=json.loads(meta.get("settings", "{}")),
            **groups,
        )


def _compact(a: np.ndarray) -> np.ndarray:
    """Floats as float32, counts and ranks as int16 where they fit: summaries stay small."""
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(a, dtype=np.float32)
    fits = a.size == 0 or (a.min() >= -(2**15) and a.max() < 2**15)
    return np.ascontiguousarray(a, dtype=np.int16 if fits else np.int32)


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


def specific_masks(
    summary: ImportanceSummary, selection: Selection, configured: Selection | None = None
) -> dict[str, Bool[np.ndarray, "layer neuron"]]:
    """The neurons specific to the summary's language, per structure.

    Args:
        summary: The language's summary.
        selection: The rule for specific neurons. It may differ from the one the summary's counts
            were made with in its specificity (any rule) or, when it asks for every document, in
            its rule and value: the saved minimum and worst rank answer that.
        configured: The selection the counts were made with; by default read from the summary.

    Returns:
        Per structure, whether each neuron is specific.

    Raises:
        ValueError: For another rule or value with a specificity below 1: the counts were not kept.
    """
    if configured is None:
        configured = Selection(**summary.settings["selection"]) if "selection" in summary.settings else selection
    if (selection.rule, selection.value) == (configured.rule, configured.value):
        need = selection.required(summary.n_documents)
        return {s: c >= need for s, c in summary.count.items()}
    if selection.specificity < 1:
        raise ValueError(
            "Counts for another rule or value were not kept; re-run PLND with this selection, or "
            "use specificity 1.0 (every document), which the saved minimum and worst rank allow."
        )
    if selection.rule == "threshold":
        return {s: m >= selection.value for s, m in summary.minimum.items()}
    return {s: (w < selection.k(w.shape[-1])) & (summary.minimum[s] > 0) for s, w in summary.worst_rank.items()}


def half_masks(summary: ImportanceSummary, selection: Selection) -> list[dict[str, Bool[np.ndarray, "layer neuron"]]]:
    """The specific masks from each half of the documents (for the stability measure)."""
    return [
        {s: h[i] >= selection.required(n) for s, h in summary.count_halves.items()}
        for i, n in enumerate(summary.half_sizes())
    ]


def language_sets(
    summaries: Mapping[str, ImportanceSummary], selection: Selection, configured: Selection | None = None
) -> dict[str, NeuronSet]:
    """Specific neuron sets of every language; exclusive ones when the selection says so.

    Args:
        summaries: Per language, its summary.
        selection: The rule for specific (and exclusive) neurons.
        configured: The selection the counts were made with; by default read from each summary.

    Returns:
        Per language, its set.
    """
    masks = {lang: specific_masks(s, selection, configured) for lang, s in summaries.items()}
    if selection.exclusive and len(masks) > 1:
        shared = {s: np.logical_and.reduce([m[s] for m in masks.values()]) for s in next(iter(masks.values()))}
        masks = {lang: {s: m[s] & ~shared[s] for s in m} for lang, m in masks.items()}
    return {lang: NeuronSet.from_mask(m) for lang, m in masks.items()}


@dataclass
class PLNDResult(Result):
    """Language-specific neurons of a model: per language the selected set and its summary.

    Attributes:
        sets: Per language, its specific neurons.
        selection: The rule they were selected by.
        n_layers: The model's layers.
        sizes: Neurons per layer of each structure.
        documents: Per language, ``n_documents`` and ``n_tokens``.
        stability: Per language, the Jaccard index of the sets from the two halves of its documents.
        lape: Per language, LAPE's set (empty unless counted, for two languages or more).
        lape_settings: LAPE's rates.
        settings: How the analysis was run.
    """

    sets: dict[str, NeuronSet]
    selection: Selection
    n_layers: int
    sizes: dict[str, int]
    documents: dict[str, dict] = field(default_factory=dict)
    stability: dict[str, float] = field(default_factory=dict)
    lape: dict[str, NeuronSet] = field(default_factory=dict)
    lape_settings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    JSON = "plnd.json"

    @classmethod
    def build(
        cls,
        model: Model,
        summaries: Mapping[str, ImportanceSummary],
        selection: Selection,
        settings: Mapping[str, Any] | None = None,
        lape_options: Mapping[str, float] | None = None,
    ) -> PLNDResult:
        """Select the sets from the summaries; stability from the halves; LAPE when counted.

        Args:
            model: The model (its dimensions).
            summaries: Per language, its summary.
            selection: The rule for specific neurons.
            settings: How the analysis was run, kept with the result.
            lape_options: Overrides of [`LapeOptions`][workbench.neurons.lape.LapeOptions]' rates.

        Returns:
            The result.
        """
        dims = NeuronDims.of(model)
        structures = list(next(iter(summaries.values())).total)
        halves = {lang: half_masks(s, selection) for lang, s in summaries.items()}
        stability = {lang: NeuronSet.from_mask(a).jaccard(NeuronSet.from_mask(b)) for lang, (a, b) in halves.items()}
        lape, lape_settings = {}, {}
        if len(summaries) > 1 and all(s.positive is not None for s in summaries.values()):
            options = LapeOptions(**(lape_options or {}))
            lape = lape_sets(summaries, options)
            lape_settings = asdict(options)
        return cls(
            sets=language_sets(summaries, selection),
            selection=selection,
            n_layers=dims.n_layers,
            sizes={s: structure_size(dims, s) for s in structures},
            documents={lang: {"n_documents": s.n_documents, "n_tokens": s.n_tokens} for lang, s in summaries.items()},
            stability=stability,
            lape=lape,
            lape_settings=lape_settings,
            settings=dict(settings or {}),
        )

    @property
    def languages(self) -> list[str]:
        """The languages, in order."""
        return list(self.sets)

    def total_neurons(self) -> int:
        """All neurons of the scored structures in the model."""
        return self.n_layers * sum(self.sizes.values())

    # ----------------------------------------------------------------------------- analyses
    def exclusive_sets(self) -> dict[str, NeuronSet]:
        """Each language's set minus the neurons specific to every language."""
        shared = self.shared()
        return {lang: s - shared for lang, s in self.sets.items()}

    def named_sets(self, which: str = "plnd") -> dict[str, NeuronSet]:
        """One kind of set per language.

        Args:
            which: ``"plnd"`` (the selected sets), ``"exclusive"`` or ``"lape"``.

        Returns:
            Per language, its set of that kind.

        Raises:
            ValueError: For another kind.
        """
        if which == "plnd":
            return self.sets
        if which == "exclusive":
            return self.exclusive_sets()
        if which == "lape":
            return self.lape
        raise ValueError(f"Unknown set kind {which!r}; choose from {', '.join(SET_KINDS)}.")

    def per_layer(self, language: str, which: str = "plnd") -> dict[str, list[int]]:
        """Specific neurons per layer of each structure (the paper's Figure 3)."""
        counts = self.named_sets(which)[language].per_layer(self.n_layers)
        return {s: counts.get(s, [0] * self.n_layers) for s in self.sizes}

    def overlap(self, which: str = "plnd") -> Float[np.ndarray, "language language"]:
        """Jaccard index between every two languages' sets (Appendix C)."""
        sets = self.named_sets(which)
        langs = list(sets)
        return np.array([[sets[a].jaccard(sets[b]) for b in langs] for a in langs])

    def shared(self) -> NeuronSet:
        """The neurons specific to every language (what ``exclusive`` removes)."""
        sets = list(self.sets.values())
        out = sets[0]
        for other in sets[1:]:
            out = out & other
        return out

    def agreement(self) -> dict[str, float]:
        """Per language, the Jaccard index of the PLND FFN set and the LAPE set."""
        return {lang: self.sets[lang].only(("ffn",)).jaccard(s) for lang, s in self.lape.items() if lang in self.sets}

    def table(self) -> list[dict[str, Any]]:
        """One row per language: set sizes by structure, share of all neurons, stability, LAPE."""
        total = self.total_neurons()
        agreement = self.agreement()
        shared = self.shared()
        rows = []
        for lang, neurons in self.sets.items():
            row = {"language": lang, **self.documents.get(lang, {})}
            row.update({s: neurons.count(s) for s in self.sizes})
            row["all"] = len(neurons)
            row["% of neurons"] = round(100 * len(neurons) / total, 4)
            row["not shared by all languages"] = len(neurons - shared)
            row["stability (Jaccard of halves)"] = round(self.stability.get(lang, float("nan")), 3)
            if self.lape:
                row["LAPE neurons"] = self.lape[lang].count() if lang in self.lape else 0
                row["PLND-FFN vs LAPE (Jaccard)"] = round(agreement.get(lang, float("nan")), 3)
            rows.append(row)
        return rows


__all__ = [
    "ImportanceSummary",
    "PLNDResult",
    "RULES",
    "Selection",
    "language_importance",
    "language_sets",
    "specific_masks",
]
