"""The paper's claims, each decided on the study's numbers: the findings of the clt-study slice."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from workbench.analyses.clt_study.result import Finding, Result


def findings(result: Result) -> list[Finding]:
    """Each of the paper's claims against the study's numbers (the probe's and the diff's where the run has them)."""
    out = [_multilingual(result), _specific(result), _identity(result), _overlap(result), _steering(result)]
    return out + [f for f in (_probe_finding(result), _diff_finding(result)) if f is not None]


def _late(result: Result) -> list[int]:
    """The indices of the covered layers in the last third."""
    return [i for i, layer in enumerate(result.layers) if layer >= 2 * result.n_layers / 3]


def _multilingual(result: Result) -> Finding:
    layers, n = result.layers, len(result.layers)
    multi = np.array(result.multilingual)
    peak = int(np.argmax(multi))
    return Finding(
        "Shared multilingual features peak in the middle layers.",
        None if n < 3 or not multi.any() else 0 < peak < n - 1,
        f"Multilingual features per layer ({layer_list(layers)}): {listed(result.multilingual)}; most in "
        f"layer {layers[peak]}.",
    )


def _specific(result: Result) -> Finding:
    late = _late(result)
    spec = np.array(result.specific)
    top = int(np.argmax(spec))
    return Finding(
        "Language-specific features concentrate in the late layers.",
        None if not late or not spec.any() else top in late,
        f"Language-specific features per layer: {listed(result.specific)}; most in layer {result.layers[top]} "
        f"(late: layer {math.ceil(2 * result.n_layers / 3)} on).",
    )


def _identity(result: Result) -> Finding:
    strongest = {}
    for row in result.identity:
        strongest.setdefault(row["language"], row)
    where = [row["layer"] for row in strongest.values()]
    return Finding(
        "Language-identity features sit in the late layers.",
        None if not where else float(np.median(where)) >= 2 * result.n_layers / 3,
        "Strongest identity feature per language: "
        + "; ".join(
            f"{lang} {row['feature']} ({row['frequency']:.0%} of its tokens, at most {row['other']:.0%} of another's)"
            for lang, row in strongest.items()
        )
        + ".",
    )


def _overlap(result: Result) -> Finding:
    n = len(result.layers)
    jac = np.array(result.jaccard, dtype=float)
    measured = ~np.isnan(jac)
    shape = None
    if measured.sum() >= 3:
        values = np.nan_to_num(jac)
        best = int(np.argmax(values))
        shape = 0 < best < n - 1 and values[0] < values[best] and values[-1] < values[best]
    g = result.graphs
    return Finding(
        "Graph overlap across languages is low at the first layer, peaks in the middle, is lower late "
        "(the paper: near 0 at the first layer).",
        shape,
        f"Jaccard of kept features per layer: {listed(result.jaccard, 3)} over "
        f"{g['graphs']} graphs (replacement score {g['replacement']:.2f}, "
        f"completeness {g['completeness']:.2f}; the answer is the top token in "
        f"{g['answers_top']} of {g['answers']} prompts).",
    )


def _steering(result: Result) -> Finding:
    works = [row for row in result.steering if row["works"]]
    return Finding(
        "Switching identity features steers the output language; matched random features do not.",
        None if not result.steering else len(works) * 2 > len(result.steering),
        f"Steering works in {len(works)} of {len(result.steering)} language pairs; target share "
        f"{finite_mean([r['identity'] for r in result.steering]):.0%} with identity features against "
        f"{finite_mean([r['control'] for r in result.steering]):.0%} with the control at the same "
        "strength.",
    )


def _probe_finding(result: Result) -> Finding | None:
    p = result.probe
    if not p:
        return None
    where, early = p["readable_from"], result.n_layers / 3
    b, shared = p["baselines"], _floats(p["shared"])
    best = int(np.argmax(np.nan_to_num(shared, nan=-1.0)))
    return Finding(
        "A token's language is linearly readable from the residual stream in the early layers.",
        None if all(math.isnan(v) for v in shared) else where is not None and where <= early,
        f"A linear probe's held-out accuracy on tokens shared between languages, per residual point "
        f"(0: embeddings): {listed(p['shared'], 2)}; it reaches {p['threshold']:.0%} "
        f"{'at point ' + str(where) if where is not None else 'nowhere'} (early: up to point "
        f"{math.floor(early)}), best {shared[best]:.0%} at point {best}; the token id alone gives "
        f"{b['token_shared']:.0%} on them ({b['token']:.0%} on all tokens).",
    )


def _diff_finding(result: Result) -> Finding | None:
    d = result.diff
    if not d:
        return None
    own, others = np.array(_floats(d["own"])), np.array(_floats(d["others"]))
    measured = not np.isnan(own).all()
    mean_own, mean_others = float(np.nanmean(own)) if measured else math.nan, finite_mean(list(others))
    top = d["layers"][int(np.nanargmax(own))] if measured else None
    return Finding(
        f"Fine-tuning {d['target']}'s neurons strengthens {d['target']}'s own features more than other "
        "languages' own features.",
        None if not measured else mean_own > 0 and (math.isnan(mean_others) or mean_own > mean_others),
        f"Frequency change of {d['target']}-specific features on {d['target']} tokens per layer "
        f"({layer_list(d['layers'])}): {listed(d['own'], 4)} (mean {mean_own:+.4f}, most in layer {top}); other "
        f"languages' own features: {listed(d['others'], 4)} (mean {mean_others:+.4f}).",
    )


def finite_mean(values: Iterable[float | None]) -> float:
    """The mean of the numbers that are neither None nor NaN (NaN where none is)."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _floats(values: Iterable[float | None]) -> list[float]:
    """Numbers as floats, a missing one (saved as null) as NaN."""
    return [math.nan if v is None else float(v) for v in values]


def listed(values: Iterable[float | None], digits: int = 0) -> str:
    """Numbers joined by commas, with ``digits`` decimals (as they are with 0), a missing one as ``-``."""
    return ", ".join(
        "-" if v is None or isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}" if digits else str(v)
        for v in values
    )


def layer_list(layers: list[int]) -> str:
    """Layer indices joined by commas."""
    return ", ".join(map(str, layers))
