"""LAPE (Tang et al. 2024; docs/methods.md §6): language activation probability entropy.

A second, independent detector of language-specific FFN neurons, from the same forward passes
as PLND. For every FFN neuron and language, p = the share of the language's tokens on which the
neuron's activation is positive. Normalised over languages, the distribution's entropy is low
for a neuron that fires for few languages. LAPE keeps the ``top_rate`` lowest-entropy neurons,
among those whose highest activation probability is above the ``filter_rate`` quantile of all
probabilities, and assigns each kept neuron to every language whose probability is above the
``bar_rate`` quantile. The defaults are the released code's (1%, 0.95, 0.95).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from jaxtyping import Bool, Float

from workbench.neurons.sets import NeuronSet


class ActivationCounts(Protocol):
    """What LAPE reads of a language's summary.

    PLND's [`ImportanceSummary`][workbench.neurons.plnd_summary.ImportanceSummary] is one.
    """

    @property
    def positive(self) -> Float[np.ndarray, "layer d_mlp"] | None:
        """Tokens on which each FFN neuron's activation is positive (None where not counted)."""
        ...

    @property
    def n_tokens(self) -> int:
        """The language's counted tokens."""
        ...


@dataclass(frozen=True)
class LapeOptions:
    """LAPE's three rates (the released code's defaults).

    Attributes:
        top_rate: The share of all FFN neurons kept: those of lowest entropy.
        filter_rate: A kept neuron's highest activation probability must exceed this quantile of
            all probabilities.
        bar_rate: A kept neuron belongs to every language whose probability exceeds this quantile.
    """

    top_rate: float = 0.01
    filter_rate: float = 0.95
    bar_rate: float = 0.95


def activation_probabilities(
    summaries: Mapping[str, ActivationCounts],
) -> Float[np.ndarray, "language layer d_mlp"]:
    """Share of each language's counted tokens on which each FFN neuron's activation is positive.

    Args:
        summaries: Per language, its PLND summary, made with LAPE's counts (``positive``).

    Returns:
        The probabilities, languages in the order of ``summaries``.

    Raises:
        ValueError: For a summary made without LAPE's counts.
    """
    probs = []
    for language, s in summaries.items():
        if s.positive is None:
            raise ValueError(f"The summary of {language} has no LAPE counts; run PLND with lape=True.")
        probs.append(s.positive / max(1, s.n_tokens))
    return np.stack(probs)


def lape_entropy(probs: Float[np.ndarray, "language layer d_mlp"]) -> Float[np.ndarray, "layer d_mlp"]:
    """Entropy over languages of the normalised activation probabilities."""
    total = probs.sum(0, keepdims=True)
    normed = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    logs = np.log(normed, out=np.zeros_like(normed), where=normed > 0)
    return -(normed * logs).sum(0)


def lape_masks(
    probs: Float[np.ndarray, "language layer d_mlp"], options: LapeOptions = LapeOptions()
) -> Bool[np.ndarray, "language layer d_mlp"]:
    """The neurons LAPE assigns to each language.

    Args:
        probs: The activation probabilities
            ([`activation_probabilities`][workbench.neurons.lape.activation_probabilities]).
        options: The rates.

    Returns:
        Per language, whether each FFN neuron is one of its neurons.
    """
    flat = np.sort(probs.ravel())
    quantile = lambda rate: flat[max(0, round(len(flat) * rate) - 1)]  # noqa: E731 (kthvalue)
    entropy = lape_entropy(probs)
    entropy[(probs > quantile(options.filter_rate)).sum(0) == 0] = np.inf
    n_keep = round(entropy.size * options.top_rate)
    keep = np.zeros(entropy.size, dtype=bool)
    keep[np.argsort(entropy.ravel(), kind="stable")[:n_keep]] = True
    keep &= np.isfinite(entropy.ravel())
    return keep.reshape(entropy.shape)[None] & (probs > quantile(options.bar_rate))


def lape_sets(summaries: Mapping[str, ActivationCounts], options: LapeOptions = LapeOptions()) -> dict[str, NeuronSet]:
    """LAPE's FFN neuron set of every language.

    Args:
        summaries: Per language, its PLND summary, made with LAPE's counts.
        options: The rates.

    Returns:
        Per language, its set (FFN neurons only).

    Raises:
        ValueError: For fewer than two languages: LAPE compares languages.
    """
    if len(summaries) < 2:
        raise ValueError("LAPE compares languages: give it two languages or more.")
    masks = lape_masks(activation_probabilities(summaries), options)
    return {lang: NeuronSet.from_mask({"ffn": m}) for lang, m in zip(summaries, masks)}
