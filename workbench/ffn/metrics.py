"""The FFN metrics: plain functions of an activation matrix, and Spearman's rank correlation.

Each takes every row at once (``[row, unit]``: one row per counted position, one column per
detector or combinator). They are the definitions; the streamed sums of
[`SublayerSums`][workbench.ffn.summary.SublayerSums] give exactly their values on all rows at once
(tested), so a run never keeps a token's activations.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float

from workbench.ffn.similarity import pearson


def sparsity(acts: Float[np.ndarray, "row unit"], tol: float = 0.0) -> float:
    """Share of entries of ``acts`` with ``|a| <= tol`` (exact zeros at tol 0)."""
    acts = np.asarray(acts)
    return float((np.abs(acts) <= tol).mean())


def frequency(acts: Float[np.ndarray, "row unit"], tol: float = 0.0) -> Float[np.ndarray, " unit"]:
    """Per unit, the share of rows where it is active (``|a| > tol``)."""
    return (np.abs(np.asarray(acts)) > tol).mean(0)


def row_entropy(acts: Float[torch.Tensor, "row unit"]) -> Float[torch.Tensor, " row"]:
    """Per row: the entropy (nats) of the row min-max normalised to [0, 1] and then to sum 1.

    A constant row counts as perfectly flat (``log units``).
    """
    acts = acts.double()
    low, high = acts.min(-1, keepdim=True).values, acts.max(-1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (acts - low) / span.clamp_min(1e-300), torch.ones_like(acts))
    p = scaled / scaled.sum(-1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def row_flatness(acts: Float[np.ndarray, "row unit"]) -> float:
    """Activation flatness: mean over rows of [`row_entropy`][workbench.ffn.metrics.row_entropy].

    The paper sums over rows; the mean compares languages with different token counts.
    ``log(units)`` is the maximum.
    """
    return float(row_entropy(torch.as_tensor(np.asarray(acts, dtype=np.float64))).mean())


def ranks(values: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
    """Ranks 1..n, ties sharing their average rank (as Spearman's coefficient needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    out = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for stop in range(1, len(values) + 1):
        if stop == len(values) or sorted_values[stop] != sorted_values[start]:
            out[order[start:stop]] = (start + stop + 1) / 2
            start = stop
    return out


def spearman(a: Float[np.ndarray, " n"], b: Float[np.ndarray, " n"]) -> float:
    """Spearman rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    return pearson(ranks(a), ranks(b))
