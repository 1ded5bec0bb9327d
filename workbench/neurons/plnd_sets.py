"""PLND's language-specific neuron sets, selected from the summaries, and the result that keeps them.

A neuron is *specific* to a language when it is activated for all (or a chosen fraction of) the
language's documents; optionally sets are made *exclusive* by removing the neurons specific to
every language (docs/methods.md §5). The selection reads only the per-language
[`ImportanceSummary`][workbench.neurons.plnd_summary.ImportanceSummary]s, so sets for another
k or threshold need no model run.

[`PLNDResult`][workbench.neurons.plnd_sets.PLNDResult] holds the selected sets with their
stability (two halves of the documents), LAPE's sets and the tables, and saves them as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Bool, Float

from workbench.models.model import Model
from workbench.neurons.lape import LapeOptions, lape_sets
from workbench.neurons.plnd_summary import ImportanceSummary
from workbench.neurons.selection import SET_KINDS, Selection
from workbench.neurons.sets import NeuronDims, NeuronSet, structure_size
from workbench.runs.results import Result


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


__all__ = ["PLNDResult", "half_masks", "language_sets", "specific_masks"]
