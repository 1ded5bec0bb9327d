"""Which neurons an analysis reads, and when one counts as activated or language-specific.

Plain definitions without torch (the command line validates them at once): the neuron
structures PLND scores, and [`Selection`][workbench.neurons.selection.Selection], PLND's rule for
activated and specific neurons (MWork; docs/methods.md §5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from jaxtyping import Bool, Float, Int

STRUCTURES: tuple[str, ...] = ("ffn", "attn_q", "attn_k", "attn_v", "attn_o")
"""The neuron structures, in canonical order: the FFN and the four attention projections."""
SET_NAMES: dict[str, str] = {
    "plnd": "PLND's sets (with the neurons every language shares)",
    "exclusive": "PLND's sets without the neurons every language shares",
    "lape": "LAPE's sets (FFN neurons)",
}
"""The kinds of neuron set PLND's result offers (``PLNDResult.named_sets``), with a description of each."""
SET_KINDS: tuple[str, ...] = tuple(SET_NAMES)
"""The names of [`SET_NAMES`][workbench.neurons.selection.SET_NAMES]."""


Rule = Literal["top_fraction", "top_k", "threshold"]
"""How a neuron is activated for a document: among the top fraction or top k of its layer, or above a threshold."""
RULES: tuple[str, ...] = ("top_fraction", "top_k", "threshold")
"""The values of [`Rule`][workbench.neurons.selection.Rule]."""


@dataclass(frozen=True)
class Selection:
    """How activated and language-specific neurons are chosen.

    Defaults: ``top_fraction`` 0.01 (a neuron is activated for a document when it is among the
    1% most important of its layer and structure; the released code's top-k choice, as a
    fraction so it fits any model size), ``specificity`` 1.0 (activated for *every* document
    of the language, as in the paper's definition), not exclusive (the paper's Appendix C
    reports the overlap between languages' sets, so they are not made disjoint).
    ``rule="threshold"`` is the paper's Imp >= epsilon with ``value`` = epsilon.
    """

    rule: Rule = "top_fraction"
    value: float = 0.01
    specificity: float = 1.0
    exclusive: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"Unknown selection rule {self.rule!r}; choose from {', '.join(RULES)}.")
        if self.rule == "top_fraction" and not 0 < self.value <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.value}.")
        if self.rule == "top_k" and (self.value < 1 or self.value != int(self.value)):
            raise ValueError(f"top_k must be a positive integer, got {self.value}.")
        if not 0 < self.specificity <= 1:
            raise ValueError(f"specificity is a fraction of documents in (0, 1], got {self.specificity}.")

    def k(self, size: int) -> int:
        """How many neurons per layer and structure the top rules keep for one document.

        Args:
            size: The neurons per layer of the structure.

        Returns:
            ``value`` itself for ``top_k``, else the fraction of ``size`` rounded up (at least 1).
        """
        return int(self.value) if self.rule == "top_k" else max(1, math.ceil(self.value * size))

    def activated(
        self, importance: Float[torch.Tensor, "batch layer neuron"], ranks: Int[torch.Tensor, "batch layer neuron"]
    ) -> Bool[torch.Tensor, "batch layer neuron"]:
        """The neurons activated for each document (never one of importance 0).

        Args:
            importance: Each document's importances.
            ranks: Each neuron's rank within its layer (0 = most important), as
                [`descending_ranks`][workbench.neurons.plnd.descending_ranks] gives them.

        Returns:
            Whether each neuron is activated for each document.
        """
        if self.rule == "threshold":
            return importance >= self.value
        return (ranks < self.k(importance.shape[-1])) & (importance > 0)

    def required(self, n_documents: int) -> int:
        """Documents a neuron must be activated for to be specific."""
        return max(1, math.ceil(self.specificity * n_documents - 1e-9))
