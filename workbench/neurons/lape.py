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

from dataclasses import dataclass

import numpy as np

from workbench.neurons.sets import NeuronSet


@dataclass(frozen=True)
class LapeOptions:
    top_rate: float = 0.01
    filter_rate: float = 0.95
    bar_rate: float = 0.95


def activation_probabilities(summaries: dict) -> np.ndarray:
    """``[languages, layers, d_mlp]``: share of each language's counted tokens with activation > 0."""
    return np.stack([s.positive / max(1, s.n_tokens) for s in summaries.values()])


def lape_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy over languages of the normalised activation probabilities, ``[layers, d_mlp]``."""
    total = probs.sum(0, keepdims=True)
    normed = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    logs = np.log(normed, out=np.zeros_like(normed), where=normed > 0)
    return -(normed * logs).sum(0)


def lape_masks(probs: np.ndarray, options: LapeOptions = LapeOptions()) -> np.ndarray:
    """Boolean ``[languages, layers, d_mlp]``: the neurons LAPE assigns to each language."""
    flat = np.sort(probs.ravel())
    quantile = lambda rate: flat[max(0, round(len(flat) * rate) - 1)]  # noqa: E731 (kthvalue)
    entropy = lape_entropy(probs)
    entropy[(probs > quantile(options.filter_rate)).sum(0) == 0] = np.inf
    n_keep = round(entropy.size * options.top_rate)
    keep = np.zeros(entropy.size, dtype=bool)
    keep[np.argsort(entropy.ravel(), kind="stable")[:n_keep]] = True
    keep &= np.isfinite(entropy.ravel())
    return keep.reshape(entropy.shape)[None] & (probs > quantile(options.bar_rate))


def lape_sets(summaries: dict, options: LapeOptions = LapeOptions()) -> dict[str, NeuronSet]:
    """LAPE's FFN neuron set of every language (needs two languages or more)."""
    if len(summaries) < 2:
        raise ValueError("LAPE compares languages: give it two languages or more.")
    masks = lape_masks(activation_probabilities(summaries), options)
    return {lang: NeuronSet.from_mask({"ffn": m}) for lang, m in zip(summaries, masks)}
