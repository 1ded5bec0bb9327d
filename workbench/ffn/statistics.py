"""FFN detectors and combinators (docs/methods.md §9; Bhattacharya & Bojar, arXiv 2404.13855).

Each FFN is read as two sublayers: the *detectors* are the first sublayer's activations
(``blocks.{l}.mlp.hook_post``: after the activation function, and for gated MLPs after the
gate; ``d_mlp`` values per token) and the *combinators* the second sublayer's output
(``hook_post @ W_out + b_out``: ``d_model`` values, before any post-FFN norm).

Collection streams: per language, per layer and sublayer, a forward pass adds running sums to a
[`SublayerSums`][workbench.ffn.statistics.SublayerSums] (rows seen, near-zero counts and summed values per unit, summed row
entropy) and, optionally, each document's mean vector for representational similarity; no
token's activations are kept. The metrics ([`sparsity`][workbench.ffn.statistics.sparsity], [`frequency`][workbench.ffn.statistics.frequency],
[`row_flatness`][workbench.ffn.statistics.row_flatness], [`spearman`][workbench.ffn.statistics.spearman]) are plain functions of an activation matrix, and the
sums give exactly the values those functions give on all rows at once (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save

from workbench.data.batching import DEFAULT_BATCH_TOKENS, counted_positions, iter_batches, pad_id_of
from workbench.runs.distributed import all_gather, all_reduce, shard
from workbench.runs.results import Result, atomic_write_bytes

SUBLAYERS: tuple[str, ...] = ("detector", "combinator")
POSITIONS: tuple[str, ...] = ("all", "last")
GELU_TOLERANCE = 1e-2
"""|activation| at or below this counts as zero for GELU/SiLU-like activations."""


def default_tolerance(model) -> float:
    """0 for ReLU (exact zeros exist), [`GELU_TOLERANCE`][workbench.ffn.statistics.GELU_TOLERANCE] for smooth activations."""
    return 0.0 if str(getattr(model.cfg, "act_fn", "")).lower() == "relu" else GELU_TOLERANCE


# ----------------------------------------------------------------------------- metrics


def sparsity(acts: np.ndarray, tol: float = 0.0) -> float:
    """Share of entries of ``acts [rows, units]`` with ``|a| <= tol`` (exact zeros at tol 0)."""
    acts = np.asarray(acts)
    return float((np.abs(acts) <= tol).mean())


def frequency(acts: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Per unit, the share of rows where it is active (``|a| > tol``)."""
    return (np.abs(np.asarray(acts)) > tol).mean(0)


def row_entropy(acts: torch.Tensor) -> torch.Tensor:
    """Per row: the entropy (nats) of the row min-max normalised to [0, 1] and then to sum 1.
    A constant row counts as perfectly flat (``log units``).
    """
    acts = acts.double()
    low, high = acts.min(-1, keepdim=True).values, acts.max(-1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (acts - low) / span.clamp_min(1e-300), torch.ones_like(acts))
    p = scaled / scaled.sum(-1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def row_flatness(acts: np.ndarray) -> float:
    """Activation flatness: mean over rows of [`row_entropy`][workbench.ffn.statistics.row_entropy] (the paper sums over rows;
    the mean compares languages with different token counts). ``log(units)`` is the maximum.
    """
    return float(row_entropy(torch.as_tensor(np.asarray(acts, dtype=np.float64))).mean())


def ranks(values: np.ndarray) -> np.ndarray:
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


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else math.nan


# ----------------------------------------------------------------------------- streaming sums


@dataclass
class SublayerSums:
    """Running sums over rows for every layer of one sublayer: ``near_zero`` and ``total`` are
    ``[layers, units]``, ``entropy`` is ``[layers]``; ``rows`` is the number of rows added.
    """

    rows: int
    near_zero: np.ndarray
    total: np.ndarray
    entropy: np.ndarray

    @classmethod
    def empty(cls, n_layers: int, units: int) -> SublayerSums:
        return cls(0, np.zeros((n_layers, units), np.int64), np.zeros((n_layers, units)), np.zeros(n_layers))

    def sparsity(self) -> np.ndarray:
        """``[layers]``: share of near-zero entries."""
        return self.near_zero.sum(1) / max(self.rows * self.near_zero.shape[1], 1)

    def frequency(self) -> np.ndarray:
        """``[layers, units]``: share of rows where each unit is active."""
        return 1.0 - self.near_zero / max(self.rows, 1)

    def flatness(self) -> np.ndarray:
        """``[layers]``: mean row entropy (nats)."""
        return self.entropy / max(self.rows, 1)

    def mean(self) -> np.ndarray:
        """``[layers, units]``: mean activation per unit (ranks equal those of the summed one)."""
        return self.total / max(self.rows, 1)

    def merge(self) -> None:
        """Add the other processes' sums under ``torchrun`` ([`workbench.runs.distributed`][workbench.runs.distributed]), in
        place; nothing to do in a world of one.
        """
        for array in (self.near_zero, self.total, self.entropy):
            all_reduce(torch.from_numpy(array), "sum")  # shares the array's memory
        self.rows = int(all_reduce(torch.tensor([self.rows]), "sum")[0])


class Collector:
    """Hooks that add one batch's detector and combinator rows to per-sublayer sums (and each
    document's mean vector when ``pooled``).
    """

    def __init__(self, model, tolerance: float, positions: str = "all", pooled: bool = False):
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
        self._batch_pooled: dict[str, list[np.ndarray]] = {}
        self.rows_weight: torch.Tensor | None = None  # [b, pos]: > 0 where a position is a row

    def hooks(self) -> list:
        return [(f"blocks.{layer}.mlp.hook_post", self._hook(layer)) for layer in range(len(self.model.blocks))]

    def _hook(self, layer: int):
        def hook(post, hook):
            mlp = self.model.blocks[layer].mlp
            combined = post @ mlp.W_out
            if getattr(mlp, "b_out", None) is not None:
                combined = combined + mlp.b_out
            for name, acts in (("detector", post), ("combinator", combined)):
                self._add(name, layer, acts.detach().float())

        return hook

    def _add(self, name: str, layer: int, acts: torch.Tensor) -> None:
        weight = self.rows_weight.to(acts.device)  # the layer's device, when layers are split over GPUs
        sums, rows = self.sums[name], acts[weight > 0]
        sums.near_zero[layer] += (rows.abs() <= self.tolerance).sum(0).cpu().numpy()
        sums.total[layer] += rows.double().sum(0).cpu().numpy()
        sums.entropy[layer] += float(row_entropy(rows).sum())
        if self.pooled is not None:
            mean = torch.einsum("bpu,bp->bu", acts, weight) / weight.sum(1, keepdim=True).clamp_min(1)
            self._batch_pooled.setdefault(name, [None] * len(self.model.blocks))[layer] = mean.cpu().numpy()

    def run(self, tokens: torch.Tensor, mask: torch.Tensor, include_bos: bool) -> None:
        counted = counted_positions(mask, include_bos).to(tokens.device)
        self.rows_weight = counted if self.positions == "all" else _last_only(counted)
        self._batch_pooled = {}
        with torch.no_grad():
            self.model.run_with_hooks(tokens, fwd_hooks=self.hooks(), stop_at_layer=len(self.model.blocks))
        n_rows = int((self.rows_weight > 0).sum())
        for sums in self.sums.values():
            sums.rows += n_rows
        if self.pooled is not None:
            for name, per_layer in self._batch_pooled.items():
                self.pooled[name].append(np.stack(per_layer, axis=1))  # [b, layers, units]


def _last_only(weights: torch.Tensor) -> torch.Tensor:
    """A 0/1 ``[b, pos]`` mask of each document's last counted position."""
    out = torch.zeros_like(weights)
    last = (weights > 0).long().cumsum(1).argmax(1)
    out[torch.arange(weights.shape[0], device=weights.device), last] = 1
    return out


@dataclass
class FFNSummary:
    """One language on one set of documents: the sums of both sublayers, and (if collected)
    each document's mean vector per layer, in document order.
    """

    language: str
    ids: list[str]
    positions: str
    tolerance: float
    include_bos: bool
    sums: dict[str, SublayerSums]
    pooled: dict[str, np.ndarray] = field(default_factory=dict)  # sublayer -> [docs, layers, units]

    def save(self, path: Path) -> None:
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
    model,
    language: str,
    tokens: Sequence[torch.Tensor],
    ids: Sequence[str],
    tolerance: float | None = None,
    positions: str = "all",
    include_bos: bool = False,
    pooled: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> FFNSummary:
    """Stream ``tokens`` (one language's documents) through the model and summarise its FFNs.
    Under ``torchrun`` each process takes its share of the documents; the sums add up and the
    per-document vectors are gathered back into document order.
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
RARE = 0.01  # a unit active in fewer than 1% of rows counts as rarely active


def layer_metrics(sums: SublayerSums) -> dict[str, list[float]]:
    """Per layer: sparsity, mean activation frequency over units, share of rarely active units
    (frequency < 1%), and flatness as a share of its maximum ``log(units)``.
    """
    freq = sums.frequency()
    return {
        "sparsity": sums.sparsity().tolist(),
        "frequency": freq.mean(1).tolist(),
        "rare": (freq < RARE).mean(1).tolist(),
        "flatness": (sums.flatness() / math.log(sums.total.shape[1])).tolist(),
    }


def rank_correlations(
    parallel: dict[str, FFNSummary], unrelated: dict[str, FFNSummary], sublayer: str
) -> dict[str, np.ndarray]:
    """Per layer, ``[langs, langs]`` Spearman correlations of the units' mean activations.

    ``parallel[a, b]``: languages a and b on the same (translated) documents. ``unrelated[a, b]``:
    a on one document set and b on another, averaged over both ways; its diagonal is a language
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
    """Per-layer FFN metrics per language, rank correlations between languages, and layer
    similarities (within the model, and against other models).
    """

    languages: list[str]
    n_layers: int
    metrics: dict[str, dict[str, dict[str, list[float]]]]  # sublayer -> measure -> language -> per layer
    correlations: dict[
        str, dict[str, list[list[list[float]]]]
    ]  # sublayer -> parallel / unrelated / difference -> [layers][langs][langs]
    similarity: list[dict] = field(default_factory=list)  # {"a", "b", "sublayer", "measure", "matrix"}
    settings: dict = field(default_factory=dict)

    JSON = "ffn.json"

    @classmethod
    def build(
        cls, parallel: dict[str, FFNSummary], unrelated: dict[str, FFNSummary], similarity=(), settings=None
    ) -> FFNResult:
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

    def correlation(self, sublayer: str, kind: str = "parallel") -> np.ndarray:
        return np.array(self.correlations[sublayer][kind], dtype=float)

    def cross_language(self, sublayer: str) -> dict[str, list[float]]:
        """Per layer: the mean over language pairs of the parallel and unrelated correlations, of
        their difference, and the mean same-language correlation on different documents.
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

    def table(self, sublayer: str = "detector") -> list[dict]:
        """One row per layer: the metrics averaged over languages and the cross-language means."""
        cross = self.cross_language(sublayer)
        rows = []
        for layer in range(self.n_layers):
            row = {"layer": layer}
            for m in LAYER_MEASURES:
                row[m] = round(float(np.mean([v[layer] for v in self.metrics[sublayer][m].values()])), 4)
            row.update({f"rho {k}": round(v[layer], 4) for k, v in cross.items()})
            rows.append(row)
        return rows
