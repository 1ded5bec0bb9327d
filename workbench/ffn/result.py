"""The FFN analysis's numbers: per-layer measures of each language, and how languages correlate.

From every language's [`FFNSummary`][workbench.ffn.summary.FFNSummary] (one on parallel documents,
one on an unrelated set), [`FFNResult`][workbench.ffn.result.FFNResult] keeps, per sublayer, the
per-layer measures of [`layer_metrics`][workbench.ffn.result.layer_metrics] and the Spearman
correlations of the units' mean activations between languages
([`rank_correlations`][workbench.ffn.result.rank_correlations]), with the layer similarities the
slice computed: the saved result of the ``ffn`` analysis (``ffn.json``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Float

from workbench.ffn.metrics import spearman
from workbench.ffn.summary import SUBLAYERS, FFNSummary, SublayerSums
from workbench.runs.results import Result

LAYER_MEASURES: tuple[str, ...] = ("sparsity", "frequency", "rare", "flatness")
"""The per-layer measures of [`layer_metrics`][workbench.ffn.result.layer_metrics]."""
RARE = 0.01
"""A unit active in fewer than this share of rows counts as rarely active."""


def layer_metrics(sums: SublayerSums) -> dict[str, list[float]]:
    """The per-layer measures of one sublayer.

    Returns:
        Per layer: ``sparsity``, mean activation ``frequency`` over units, the share of ``rare``
        units (active in fewer than [`RARE`][workbench.ffn.result.RARE] of rows), and
        ``flatness`` as a share of its maximum ``log(units)``.
    """
    freq = sums.frequency()
    return {
        "sparsity": sums.sparsity().tolist(),
        "frequency": freq.mean(1).tolist(),
        "rare": (freq < RARE).mean(1).tolist(),
        "flatness": (sums.flatness() / math.log(sums.total.shape[1])).tolist(),
    }


def rank_correlations(
    parallel: Mapping[str, FFNSummary], unrelated: Mapping[str, FFNSummary], sublayer: str
) -> dict[str, Float[np.ndarray, "layer language language"]]:
    """Per layer, Spearman correlations of the units' mean activations between languages.

    Args:
        parallel: Per language, its summary on the shared (translated) documents.
        unrelated: Per language, its summary on another document set.
        sublayer: ``detector`` or ``combinator``.

    Returns:
        ``parallel[a, b]``: languages a and b on the same documents. ``unrelated[a, b]``: a on
        one document set and b on the other, averaged over both ways; its diagonal is a language
        against itself on the two sets. ``difference = parallel - unrelated``.
    """
    langs = list(parallel)
    n_layers = parallel[langs[0]].sums[sublayer].total.shape[0]
    p_mean = {lang: parallel[lang].sums[sublayer].mean() for lang in langs}
    u_mean = {lang: unrelated[lang].sums[sublayer].mean() for lang in langs}
    par = np.full((n_layers, len(langs), len(langs)), np.nan)
    unr = np.full_like(par, np.nan)
    for layer in range(n_layers):
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                par[layer, i, j] = 1.0 if i == j else spearman(p_mean[a][layer], p_mean[b][layer])
                if i == j:
                    unr[layer, i, j] = spearman(p_mean[a][layer], u_mean[a][layer])
                elif j > i:
                    ab = spearman(p_mean[a][layer], u_mean[b][layer])
                    ba = spearman(u_mean[a][layer], p_mean[b][layer])
                    unr[layer, i, j] = unr[layer, j, i] = (ab + ba) / 2
    return {"parallel": par, "unrelated": unr, "difference": par - unr}


@dataclass
class FFNResult(Result):
    """Per-layer FFN metrics per language, rank correlations between languages, and layer similarities.

    Layer similarities are within the model, and against other models.

    Attributes:
        languages: The languages.
        n_layers: The model's layers.
        metrics: Sublayer -> measure -> language -> per layer.
        correlations: Sublayer -> ``parallel`` / ``unrelated`` / ``difference`` ->
            ``[layer][language][language]``.
        similarity: Each comparison: ``a``, ``b``, ``sublayer``, ``measure``, ``matrix``.
        settings: How the analysis was run.
    """

    languages: list[str]
    n_layers: int
    metrics: dict[str, dict[str, dict[str, list[float]]]]
    correlations: dict[str, dict[str, list[list[list[float]]]]]
    similarity: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    JSON = "ffn.json"

    @classmethod
    def build(
        cls,
        parallel: Mapping[str, FFNSummary],
        unrelated: Mapping[str, FFNSummary],
        similarity: Iterable[dict[str, Any]] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> FFNResult:
        """The result from every language's summaries.

        Args:
            parallel: Per language, its summary on the shared (translated) documents.
            unrelated: Per language, its summary on another document set.
            similarity: Layer similarities already computed.
            settings: How the analysis was run (added to what the summaries say).

        Returns:
            The result.
        """
        langs = list(parallel)
        first = parallel[langs[0]]
        per_language = {sub: {lang: layer_metrics(parallel[lang].sums[sub]) for lang in langs} for sub in SUBLAYERS}
        metrics = {
            sub: {m: {lang: per_language[sub][lang][m] for lang in langs} for m in LAYER_MEASURES} for sub in SUBLAYERS
        }
        correlations = {
            sub: {k: v.tolist() for k, v in rank_correlations(parallel, unrelated, sub).items()} for sub in SUBLAYERS
        }
        settings = {
            "positions": first.positions,
            "tolerance": first.tolerance,
            "include_bos": first.include_bos,
            "documents": len(first.ids),
            **(settings or {}),
        }
        return cls(langs, first.sums["detector"].total.shape[0], metrics, correlations, list(similarity), settings)

    def correlation(self, sublayer: str, kind: str = "parallel") -> Float[np.ndarray, "layer language language"]:
        """One kind of rank correlation (``parallel``, ``unrelated``, ``difference``) of a sublayer."""
        return np.array(self.correlations[sublayer][kind], dtype=float)

    def cross_language(self, sublayer: str) -> dict[str, list[float]]:
        """Per layer, the correlations between languages, averaged.

        Returns:
            The mean over language pairs of the ``parallel`` and ``unrelated`` correlations and of
            their ``difference``, and the mean ``same language`` correlation on different
            documents.
        """
        n = len(self.languages)
        off = ~np.eye(n, dtype=bool)
        par, unr = self.correlation(sublayer, "parallel"), self.correlation(sublayer, "unrelated")
        return {
            "parallel": [float(np.nanmean(m[off])) if n > 1 else math.nan for m in par],
            "unrelated": [float(np.nanmean(m[off])) if n > 1 else math.nan for m in unr],
            "difference": [float(np.nanmean((p - u)[off])) if n > 1 else math.nan for p, u in zip(par, unr)],
            "same language": [float(np.nanmean(np.diag(m))) for m in unr],
        }

    def table(self, sublayer: str = "detector") -> list[dict[str, Any]]:
        """One row per layer: the metrics averaged over languages and the cross-language means."""
        cross = self.cross_language(sublayer)
        rows = []
        for layer in range(self.n_layers):
            row: dict[str, Any] = {"layer": layer}
            for m in LAYER_MEASURES:
                row[m] = round(float(np.mean([v[layer] for v in self.metrics[sublayer][m].values()])), 4)
            row.update({f"rho {k}": round(v[layer], 4) for k, v in cross.items()})
            rows.append(row)
        return rows
