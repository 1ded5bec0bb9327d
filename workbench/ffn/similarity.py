"""Representational similarity between layers, within a model or across two models (docs/methods.md §9:
the over-layerization question of arXiv 2404.13855).

Both measures compare two representations of the *same* n inputs, ``X [n, p]`` and ``Y [n, q]``
(widths may differ, so layers of models of different size and depth compare directly):

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

MEASURES: tuple[str, ...] = ("cka", "rsa")


def _centred_gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    return x @ x.T


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between ``x [n, p]`` and ``y [n, q]`` (the Gram-matrix form, equal to the
    feature-space one).
    """
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


def correlation_of_correlations(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation between the input-by-input correlation matrices of ``x`` and ``y``."""
    return _pearson(_upper_correlations(x), _upper_correlations(y))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def layer_similarity(a: np.ndarray, b: np.ndarray, measure: str = "cka") -> np.ndarray:
    """``[layers_a, layers_b]`` similarity between every layer of ``a [n, layers_a, p]`` and
    every layer of ``b [n, layers_b, q]`` (the same n inputs, in the same order).
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
        return np.array([[_pearson(x, y) for y in right] for x in left])
    raise ValueError(f"Unknown similarity {measure!r}; choose from {', '.join(MEASURES)}.")


def best_match(matrix: np.ndarray) -> np.ndarray:
    """For every layer of the first model, the index of the most similar layer of the second."""
    return np.nanargmax(np.nan_to_num(matrix, nan=-np.inf), axis=1)
