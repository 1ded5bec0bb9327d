"""FFN detectors and combinators (docs/methods.md §9; Bhattacharya & Bojar, arXiv 2404.13855).

Each FFN is read as two sublayers: the *detectors* are the first sublayer's activations
(``blocks.{l}.mlp.hook_post``: after the activation function, and for gated MLPs after the
gate; ``d_mlp`` values per token) and the *combinators* the second sublayer's output
(``hook_post @ W_out + b_out``: ``d_model`` values, before any post-FFN norm).

Collection streams: per language, per layer and sublayer, a forward pass adds running sums to a
[`SublayerSums`][workbench.ffn.statistics.SublayerSums] (rows seen, near-zero counts and summed
values per unit, summed row entropy) and, optionally, each document's mean vector for
representational similarity; no token's activations are kept. The metrics
([`sparsity`][workbench.ffn.statistics.sparsity], [`frequency`][workbench.ffn.statistics.frequency],
[`row_flatness`][workbench.ffn.statistics.row_flatness],
[`spearman`][workbench.ffn.statistics.spearman]) are plain functions of an activation matrix, and
the sums give exactly the values those functions give on all rows at once (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.numpy import save

from workbench.data.batching import DEFAULT_BATCH_TOKENS, counted_positions, iter_batches, pad_id_of
from workbench.ffn.similarity import pearson
from workbench.models.model import Model
from workbench.runs.distributed import all_gather, all_reduce, shard
from workbench.runs.results import Result, atomic_write_bytes

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint

SUBLAYERS: tuple[str, ...] = ("detector", "combinator")
"""The FFN's two sublayers: its hidden activations and its output."""
POSITIONS: tuple[str, ...] = ("all", "last")
"""Which positions of a document count as rows: every counted one, or the last."""
GELU_TOLERANCE = 1e-2
"""|activation| at or below this counts as zero for GELU/SiLU-like activations."""


def default_tolerance(model: Model) -> float:
    """The near-zero tolerance for the model's activation function.

    0 for ReLU (exact zeros exist), [`GELU_TOLERANCE`][workbench.ffn.statistics.GELU_TOLERANCE]
    for smooth activations.
    """
    return 0.0 if str(getattr(model.cfg, "act_fn", "")).lower() == "relu" else GELU_TOLERANCE


# ----------------------------------------------------------------------------- metrics


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
    """Activation flatness: mean over rows of [`row_entropy`][workbench.ffn.statistics.row_entropy].

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


# ----------------------------------------------------------------------------- streaming sums


@dataclass
class SublayerSums:
    """Running sums over rows for every layer of one sublayer.

    Attributes:
        rows: The rows added.
        near_zero: Per layer, the rows where each unit is near zero.
        total: Per layer, each unit's summed activation.
        entropy: Per layer, the summed row entropy.
    """

    rows: int
    near_zero: Int[np.ndarray, "layer unit"]
    total: Float[np.ndarray, "layer unit"]
    entropy: Float[np.ndarray, " layer"]

    @classmethod
    def empty(cls, n_layers: int, units: int) -> SublayerSums:
        """Sums of no rows."""
        return cls(0, np.zeros((n_layers, units), np.int64), np.zeros((n_layers, units)), np.zeros(n_layers))

    def sparsity(self) -> Float[np.ndarray, " layer"]:
        """Share of near-zero entries."""
        return self.near_zero.sum(1) / max(self.rows * self.near_zero.shape[1], 1)

    def frequency(self) -> Float[np.ndarray, "layer unit"]:
        """Share of rows where each unit is active."""
        return 1.0 - self.near_zero / max(self.rows, 1)

    def flatness(self) -> Float[np.ndarray, " layer"]:
        """Mean row entropy (nats)."""
        return self.entropy / max(self.rows, 1)

    def mean(self) -> Float[np.ndarray, "layer unit"]:
        """Mean activation per unit (ranks equal those of the summed one)."""
        return self.total / max(self.rows, 1)

    def merge(self) -> None:
        """Add the other processes' sums under ``torchrun``, in place.

        See [`workbench.runs.distributed`][workbench.runs.distributed]; nothing to do in a world of one.
        """
        for array in (self.near_zero, self.total, self.entropy):
            all_reduce(torch.from_numpy(array), "sum")  # shares the array's memory
        self.rows = int(all_reduce(torch.tensor([self.rows]), "sum")[0])


class Collector:
    """Hooks that add one batch's detector and combinator rows to per-sublayer sums.

    With ``pooled`` they also keep each document's mean vector.

    Args:
        model: The model.
        tolerance: ``|activation|`` at or below this counts as zero.
        positions: Which positions count as rows (one of
            [`POSITIONS`][workbench.ffn.statistics.POSITIONS]).
        pooled: Keep each document's mean vector per layer.

    Raises:
        ValueError: For unknown ``positions``.
    """

    def __init__(self, model: Model, tolerance: float, positions: str = "all", pooled: bool = False):
        if positions not in POSITIONS:
            raise ValueError(f"Unknown positions {positions!r}; choose from {', '.join(POSITIONS)}.")
        self.model, self.tolerance, self.positions = model, tolerance, positions
        n_layers = len(model.blocks)
        d_mlp, d_model = model.blocks[0].mlp.W_out.shape
        self.sums = {
            "detector": SublayerSums.empty(n_layers, d_mlp),
            "combinator": SublayerSums.empty(n_layers, d_model),
        }
        self.pooled: dict[str, list[np.ndarray]] | None = {s: [] for s in SUBLAYERS} if pooled else None
        self._batch_pooled: dict[str, dict[int, np.ndarray]] = {}
        self.rows_weight: torch.Tensor | None = None  # [b, pos]: > 0 where a position is a row

    def hooks(self) -> list[tuple[str, Callable[..., None]]]:
        """The forward hooks, one per layer's ``mlp.hook_post``."""
        return [(f"blocks.{layer}.mlp.hook_post", self._hook(layer)) for layer in range(len(self.model.blocks))]

    def _hook(self, layer: int) -> Callable[..., None]:
        def hook(post: torch.Tensor, hook: HookPoint) -> None:
            mlp = self.model.blocks[layer].mlp
            combined = post @ mlp.W_out
            b_out = getattr(mlp, "b_out", None)
            if b_out is not None:
                combined = combined + b_out
            for name, acts in (("detector", post), ("combinator", combined)):
                self._add(name, layer, acts.detach().float())

        return hook

    def _add(self, name: str, layer: int, acts: torch.Tensor) -> None:
        if self.rows_weight is None:
            raise RuntimeError("The hooks add rows only inside Collector.run.")
        weight = self.rows_weight.to(acts.device)  # the layer's device, when layers are split over GPUs
        sums, rows = self.sums[name], acts[weight > 0]
        sums.near_zero[layer] += (rows.abs() <= self.tolerance).sum(0).cpu().numpy()
        sums.total[layer] += rows.double().sum(0).cpu().numpy()
        sums.entropy[layer] += float(row_entropy(rows).sum())
        if self.pooled is not None:
            mean = torch.einsum("bpu,bp->bu", acts, weight) / weight.sum(1, keepdim=True).clamp_min(1)
            self._batch_pooled.setdefault(name, {})[layer] = mean.cpu().numpy()

    def run(
        self, tokens: Int[torch.Tensor, "batch pos"], mask: Int[torch.Tensor, "batch pos"], include_bos: bool
    ) -> None:
        """Run one padded batch through the model, adding its rows to the sums.

        Args:
            tokens: The batch's token ids.
            mask: 1 on real tokens, 0 on padding.
            include_bos: Count the BOS position too.
        """
        counted = counted_positions(mask, include_bos).to(tokens.device)
        self.rows_weight = counted if self.positions == "all" else _last_only(counted)
        self._batch_pooled = {}
        with torch.no_grad():
            self.model.run_with_hooks(tokens, fwd_hooks=list(self.hooks()), stop_at_layer=len(self.model.blocks))
        n_rows = int((self.rows_weight > 0).sum())
        for sums in self.sums.values():
            sums.rows += n_rows
        if self.pooled is not None:
            for name, per_layer in self._batch_pooled.items():
                layers = [per_layer[layer] for layer in range(len(self.model.blocks))]
                self.pooled[name].append(np.stack(layers, axis=1))  # [b, layers, units]


def _last_only(weights: torch.Tensor) -> torch.Tensor:
    """A 0/1 ``[b, pos]`` mask of each document's last counted position."""
    out = torch.zeros_like(weights)
    last = (weights > 0).long().cumsum(1).argmax(1)
    out[torch.arange(weights.shape[0], device=weights.device), last] = 1
    return out


@dataclass
class FFNSummary:
    """One language on one set of documents: the sums of both sublayers, and each document's mean vector.

    Attributes:
        language: The language.
        ids: The documents' ids, in order.
        positions: Which positions counted as rows.
        tolerance: ``|activation|`` at or below this counted as zero.
        include_bos: Whether the BOS position counted.
        sums: Per sublayer, its sums.
        pooled: Per sublayer, each document's mean vector per layer, in document order (empty
            unless collected).
    """

    language: str
    ids: list[str]
    positions: str
    tolerance: float
    include_bos: bool
    sums: dict[str, SublayerSums]
    pooled: dict[str, Float[np.ndarray, "document layer unit"]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the summary as safetensors (the settings and row counts as metadata)."""
        arrays = {}
        for name, s in self.sums.items():
            arrays.update({f"{name}.near_zero": s.near_zero, f"{name}.total": s.total, f"{name}.entropy": s.entropy})
        arrays.update({f"{name}.pooled": v.astype(np.float32) for name, v in self.pooled.items()})
        meta = {
            "language": self.language,
            "ids": "\n".join(self.ids),
            "positions": self.positions,
            "tolerance": repr(self.tolerance),
            "include_bos": str(self.include_bos),
            "rows": ",".join(f"{k}={s.rows}" for k, s in self.sums.items()),
        }
        atomic_write_bytes(Path(path), save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> FFNSummary:
        """The summary [`save`][workbench.ffn.statistics.FFNSummary.save] wrote."""
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata()
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
        rows = dict(item.split("=") for item in meta["rows"].split(","))
        sums = {
            name: SublayerSums(
                int(rows[name]), arrays[f"{name}.near_zero"], arrays[f"{name}.total"], arrays[f"{name}.entropy"]
            )
            for name in SUBLAYERS
        }
        pooled = {name: arrays[f"{name}.pooled"] for name in SUBLAYERS if f"{name}.pooled" in arrays}
        return cls(
            meta["language"],
            meta["ids"].split("\n") if meta["ids"] else [],
            meta["positions"],
            float(meta["tolerance"]),
            meta["include_bos"] == "True",
            sums,
            pooled,
        )


def summarise(
    model: Model,
    language: str,
    tokens: Sequence[Int[torch.Tensor, " pos"]],
    ids: Sequence[str],
    tolerance: float | None = None,
    positions: str = "all",
    include_bos: bool = False,
    pooled: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> FFNSummary:
    """Stream one language's documents through the model and summarise its FFNs.

    Under ``torchrun`` each process takes its share of the documents; the sums add up and the
    per-document vectors are gathered back into document order.

    Args:
        model: The model.
        language: The documents' language.
        tokens: Each document's token ids, BOS first.
        ids: Their ids.
        tolerance: ``|activation|`` at or below this counts as zero; by default
            [`default_tolerance`][workbench.ffn.statistics.default_tolerance].
        positions: Which positions count as rows: ``all`` or ``last``.
        include_bos: Count the BOS position too.
        pooled: Also keep each document's mean vector per layer (for layer similarity).
        batch_tokens: Tokens per batch (padding included).

    Returns:
        The language's summary.
    """
    tol = default_tolerance(model) if tolerance is None else tolerance
    collector = Collector(model, tol, positions, pooled)
    device = next(model.parameters()).device
    order: list[int] = []
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, device, shard(len(tokens))):
        collector.run(batch.tokens, batch.mask, include_bos)
        order += batch.index
    for sums in collector.sums.values():
        sums.merge()
    stacked = {}
    if collector.pooled is not None:
        local = {name: np.concatenate(parts) for name, parts in collector.pooled.items() if parts}
        every = [(o, arrays) for o, arrays in all_gather((order, local)) if o]  # processes with documents
        if every:
            inverse = np.argsort(np.concatenate([o for o, _ in every]))
            stacked = {name: np.concatenate([arrays[name] for _, arrays in every])[inverse] for name in every[0][1]}
    return FFNSummary(language, list(ids), positions, tol, include_bos, collector.sums, stacked)


# ----------------------------------------------------------------------------- the analysis

LAYER_MEASURES: tuple[str, ...] = ("sparsity", "frequency", "rare", "flatness")
"""The per-layer measures of [`layer_metrics`][workbench.ffn.statistics.layer_metrics]."""
RARE = 0.01
"""A unit active in fewer than this share of rows counts as rarely active."""


def layer_metrics(sums: SublayerSums) -> dict[str, list[float]]:
    """The per-layer measures of one sublayer.

    Returns:
        Per layer: ``sparsity``, mean activation ``frequency`` over units, the share of ``rare``
        units (active in fewer than [`RARE`][workbench.ffn.statistics.RARE] of rows), and
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
