"""Representational similarity between layers, within a model or across two models.

The over-layerization question of arXiv 2404.13855 (docs/methods.md §9). Both measures compare
two representations of the *same* n inputs, ``X [n, p]`` and ``Y [n, q]`` (widths may differ, so
layers of models of different size and depth compare directly):

* linear CKA (Kornblith et al. 2019): ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with
  column-centred ``Xc``, ``Yc``; invariant to rotations and isotropic scaling; 1 for identical
  representations;
* correlation of correlations (representational similarity analysis): the Pearson correlation
  between the upper triangles of the two ``[n, n]`` matrices of correlations between inputs.

Inputs are one vector per document (a layer's mean over positions), so models with different
tokenizers compare on the same texts.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

MEASURES: tuple[str, ...] = ("cka", "rsa")
"""The similarity measures: linear CKA and the correlation of correlations (RSA)."""


def _centred_gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    return x @ x.T


def linear_cka(x: Float[np.ndarray, "document width_x"], y: Float[np.ndarray, "document width_y"]) -> float:
    """Linear CKA between ``x`` and ``y`` (the Gram-matrix form, equal to the feature-space one)."""
    return _cka_from_grams(_centred_gram(x), _centred_gram(y))


def _cka_from_grams(kx: np.ndarray, ky: np.ndarray) -> float:
    denominator = np.linalg.norm(kx) * np.linalg.norm(ky)
    return float((kx * ky).sum() / denominator) if denominator > 0 else float("nan")


def _upper_correlations(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    return (x @ x.T)[np.triu_indices(len(x), k=1)]


def correlation_of_correlations(
    x: Float[np.ndarray, "document width_x"], y: Float[np.ndarray, "document width_y"]
) -> float:
    """Pearson correlation between the input-by-input correlation matrices of ``x`` and ``y``."""
    return pearson(_upper_correlations(x), _upper_correlations(y))


def pearson(a: Float[np.ndarray, " n"], b: Float[np.ndarray, " n"]) -> float:
    """Pearson's correlation of ``a`` and ``b`` (NaN where either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def layer_similarity(
    a: Float[np.ndarray, "document layer_a width_a"],
    b: Float[np.ndarray, "document layer_b width_b"],
    measure: str = "cka",
) -> Float[np.ndarray, "layer_a layer_b"]:
    """The similarity between every layer of ``a`` and every layer of ``b``.

    Args:
        a: One representation per input and layer.
        b: The other, of the same inputs in the same order (``a`` itself compares a model with
            itself).
        measure: ``cka`` or ``rsa`` (see the module docstring).

    Returns:
        The similarity of every pair of layers.

    Raises:
        ValueError: For different numbers of inputs, or an unknown measure.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"Both representations need the same inputs; got {a.shape[0]} and {b.shape[0]}.")
    if measure == "cka":
        left = [_centred_gram(a[:, i]) for i in range(a.shape[1])]
        right = left if b is a else [_centred_gram(b[:, j]) for j in range(b.shape[1])]
        return np.array([[_cka_from_grams(kx, ky) for ky in right] for kx in left])
    if measure == "rsa":
        left = [_upper_correlations(a[:, i]) for i in range(a.shape[1])]
        right = left if b is a else [_upper_correlations(b[:, j]) for j in range(b.shape[1])]
        return np.array([[pearson(x, y) for y in right] for x in left])
    raise ValueError(f"Unknown similarity {measure!r}; choose from {', '.join(MEASURES)}.")
