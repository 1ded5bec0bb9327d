"""Several transcoders of one model measured side by side on the same held-out verses and graph prompts.

Per transcoder and language (``workbench clt-compare``):

* per covered layer, FVU, L0 and dead share ([`layer_quality`][workbench.clt.quality.layer_quality]);
* the next-token loss of the original model, of the spliced model (every covered MLP replaced,
  [`replacement_loss`][workbench.clt.quality.replacement_loss]) and of the zero-ablated one (every
  covered MLP output zeroed, [`zero_ablation_loss`][workbench.clt.runs.compare.zero_ablation_loss]),
  and the share of the zero-ablation gap the transcoder recovers,
  ``(zero - spliced) / (zero - original)`` (1: as good as the MLPs, 0: no better than nothing);
* per graph prompt, the attribution graph's replacement and completeness scores
  ([`Graph.scores`][workbench.clt.graphs.graph.Graph.scores]).

The verses are the run's held-out sample (``Store.documents``), so with the same ``--languages``,
``--seed`` and ``--heldout`` they are the ones ``clt-train`` measures on. Each language's numbers
and each graph's scores are a part of the store, keyed by the transcoder's name and files, so an
interrupted comparison resumes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.clt.formats import load_transcoder
from workbench.clt.graphs.attribution import attribute
from workbench.clt.graphs.options import GraphOptions
from workbench.clt.quality import LayerQuality, layer_quality, replacement_loss
from workbench.clt.runs.compare_options import CompareOptions, TranscoderSpec
from workbench.clt.transcoder import CrossLayerTranscoder, check_fits, mlp_out_hook
from workbench.data.batching import iter_batches, pad_id_of, tokenize
from workbench.data.corpus import Corpus
from workbench.data.prompts import ParallelPrompt
from workbench.errors import WorkbenchError
from workbench.lens.readout import next_token_losses
from workbench.models.model import Model, model_device, model_source
from workbench.runs.results import Result, environment
from workbench.runs.store import Store

NAME = CompareOptions.ANALYSIS


@dataclass
class LanguageScores:
    """One transcoder on one language's held-out verses.

    Attributes:
        quality: Per covered layer, FVU, L0 and dead share.
        original: The model's next-token loss (nats).
        spliced: The loss with every covered MLP replaced by the transcoder.
        zero: The loss with every covered MLP output zeroed.
        recovered: The share of the zero-ablation gap recovered, ``(zero - spliced) / (zero - original)``.
    """

    quality: list[LayerQuality]
    original: float
    spliced: float
    zero: float
    recovered: float = field(init=False, default=float("nan"))

    def __post_init__(self) -> None:
        self.recovered = gap_recovered(self.original, self.spliced, self.zero)


@dataclass
class ZeroLoss:
    """The zero-ablated model's loss on one language (a part shared by transcoders covering the same layers)."""

    loss: float


@dataclass
class GraphScore:
    """One graph prompt's attribution graph, scored.

    Attributes:
        task: The prompt's task.
        item: Its item.
        language: Its language.
        replacement: The share of the inputs' influence that does not pass through error nodes.
        completeness: The influence-weighted share of the nodes' input that does not come from errors.
        active: Active features on the prompt.
        unexplained: The share of direct effect held by features left out (over ``--graph-max-features``).
    """

    task: str
    item: str
    language: str
    replacement: float
    completeness: float
    active: int
    unexplained: float


@dataclass
class TranscoderScores:
    """Everything measured of one transcoder.

    Attributes:
        name: Its name in the comparison.
        paths: The folders it was read from.
        kind: Its kind in words (per-layer, cross-layer, ..., covered layers).
        config: Its shape (``CLTConfig`` fields).
        languages: Per language, its scores on the held-out verses.
        graphs: Per graph prompt, its graph's scores.
    """

    name: str
    paths: list[str]
    kind: str
    config: dict
    languages: dict[str, LanguageScores]
    graphs: list[GraphScore] = field(default_factory=list)

    def worst(self) -> list[tuple[LayerQuality, str]]:
        """Per covered layer: highest FVU and L0, lowest dead share over languages, and the FVU's language."""
        langs = list(self.languages)
        columns = zip(*(self.languages[lang].quality for lang in langs))  # per layer, its row in every language
        out = []
        for rows in columns:
            at = max(range(len(rows)), key=lambda i: rows[i].fvu)
            worst = LayerQuality(rows[0].layer, rows[at].fvu, max(q.l0 for q in rows), min(q.dead for q in rows))
            out.append((worst, langs[at]))
        return out

    def graph_means(self) -> tuple[float, float]:
        """The mean replacement and completeness scores over the graph prompts (NaN without graphs)."""
        if not self.graphs:
            return float("nan"), float("nan")
        n = len(self.graphs)
        return sum(g.replacement for g in self.graphs) / n, sum(g.completeness for g in self.graphs) / n


@dataclass
class Comparison(Result):
    """Transcoders of one model measured side by side, with what made the numbers.

    Attributes:
        model: Where the model came from ([`model_source`][workbench.models.model.model_source]).
        corpus: The corpus's ``describe()``.
        languages: The languages measured.
        run: The run settings (seed, batch size, ...).
        settings: The comparison's own settings (held-out verses, graph prompts, ...).
        versions: The library versions ([`environment`][workbench.runs.results.environment]).
        created: When it finished (ISO time).
        transcoders: Each transcoder's scores, in the order given.
    """

    JSON = "compare.json"

    model: dict
    corpus: dict
    languages: list[str]
    run: dict
    settings: dict
    versions: dict
    created: str
    transcoders: list[TranscoderScores]

    def summary_table(self) -> list[dict]:
        """One row per transcoder: its worst layer, mean loss over languages, gap recovered, graph scores."""
        rows = []
        for t in self.transcoders:
            worst = [q for q, _ in t.worst()]
            scores = list(t.languages.values())
            replacement, completeness = t.graph_means()
            rows.append(
                {
                    "transcoder": t.name,
                    "kind": t.kind,
                    "features per layer": t.config.get("n_features"),
                    "worst FVU": max(q.fvu for q in worst),
                    "mean L0": sum(q.l0 for q in worst) / len(worst),
                    "loss original": _mean([s.original for s in scores]),
                    "loss spliced": _mean([s.spliced for s in scores]),
                    "loss zero-ablated": _mean([s.zero for s in scores]),
                    "gap recovered (worst language)": min(s.recovered for s in scores),
                    "gap recovered (mean)": _mean([s.recovered for s in scores]),
                    "graph replacement": replacement,
                    "graph completeness": completeness,
                    "graphs": len(t.graphs),
                }
            )
        return rows

    def layer_table(self) -> list[dict]:
        """One row per transcoder and covered layer: worst-language FVU (and its language), L0, dead."""
        return [
            {"transcoder": t.name, "layer": q.layer, "FVU": q.fvu, "worst language": lang, "L0": q.l0, "dead": q.dead}
            for t in self.transcoders
            for q, lang in t.worst()
        ]

    def loss_table(self) -> list[dict]:
        """One row per transcoder and language: the three losses and the gap recovered."""
        return [
            {
                "transcoder": t.name,
                "language": lang,
                "original": s.original,
                "spliced": s.spliced,
                "zero-ablated": s.zero,
                "gap recovered": s.recovered,
            }
            for t in self.transcoders
            for lang, s in t.languages.items()
        ]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def gap_recovered(original: float, spliced: float, zero: float) -> float:
    """``(zero - spliced) / (zero - original)``: 1 where the transcoder is as good as the MLPs, 0 as zeroing them.

    NaN where zeroing costs nothing (no gap to recover).
    """
    return (zero - spliced) / (zero - original) if zero != original else float("nan")


@contextmanager
def zeroed(model: Model, layers: tuple[int, ...] | list[int]) -> Iterator[Model]:
    """The model with the MLP outputs of ``layers`` zeroed (hooks on ``blocks.{l}.hook_mlp_out``, removed after).

    BOS keeps its MLP output, as in the spliced model ([`replacement`][workbench.clt.quality.replacement]).
    """

    def zero(out: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.cat([out[:, :1], torch.zeros_like(out[:, 1:])], dim=1)

    with model.hooks(fwd_hooks=[(mlp_out_hook(layer), zero) for layer in layers]):
        yield model


@torch.no_grad()
def zero_ablation_loss(
    model: Model, layers: tuple[int, ...] | list[int], documents: list[Int[torch.Tensor, " pos"]], batch_tokens: int
) -> float:
    """Mean next-token loss (nats) over ``documents`` (BOS first) with the MLP outputs of ``layers`` zeroed."""
    total, count = 0.0, 0
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, model_device(model)):
        real = batch.mask[:, 1:].bool()
        with zeroed(model, layers):
            total += float(next_token_losses(model, batch.tokens)[real].sum())
        count += int(real.sum())
    return total / max(count, 1)


def files_key(spec: TranscoderSpec) -> str:
    """A short hash of a transcoder's name and its files (path, size, time), which keys its parts."""
    stats = [spec.name]
    for folder in map(Path, spec.paths):
        files = sorted(folder.rglob("*")) if folder.is_dir() else [folder]
        stats += [f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:12]


def load_checked(spec: TranscoderSpec, model: Model, model_name: str) -> CrossLayerTranscoder:
    """The transcoder ``spec`` names, in whatever format, on the model's device, checked to fit the model.

    Raises:
        WorkbenchError: Files of no format the workbench reads, or a transcoder made for another
            model; the message names the transcoder.
    """
    try:
        clt = load_transcoder(list(spec.paths), model_name, model, model_device(model))
        check_fits(clt, model, model_name)
    except WorkbenchError as exc:
        raise WorkbenchError(f"Transcoder {spec.name}: {exc}") from None
    return clt.eval()


def measure(
    model: Model,
    clt: CrossLayerTranscoder,
    spec: TranscoderSpec,
    documents: dict[str, list[Int[torch.Tensor, " pos"]]],
    prompts: list[ParallelPrompt],
    options: CompareOptions,
    store: Store,
) -> TranscoderScores:
    """One transcoder on every language's verses and every graph prompt (each a part of ``store``)."""
    key, batch = f"{spec.name}-{files_key(spec)}", store.run.batch_tokens
    covered = clt.config.covered

    def language(lang: str) -> LanguageScores:
        docs = documents[lang]
        zero = store.reuse_json(
            NAME,
            f"zero-{'_'.join(map(str, covered))}-{lang}.json",
            lambda: ZeroLoss(zero_ablation_loss(model, covered, docs, batch)),
            ZeroLoss,
        )
        return LanguageScores(
            layer_quality(model, clt, docs, batch), *replacement_loss(model, clt, docs, batch), zero.loss
        )

    bar = tqdm(list(documents), desc=f"{spec.name}: languages", leave=False, disable=not store.show_progress)
    scores = {
        lang: store.reuse_json(NAME, f"{key}/{lang}.json", lambda: language(lang), LanguageScores) for lang in bar
    }
    bar = tqdm(prompts, desc=f"{spec.name}: graphs", leave=False, disable=not store.show_progress)
    graphs = [
        store.reuse_json(
            NAME,
            f"{key}/graph-{p.task}-{p.item}-{p.language}.json",
            lambda: graph_score(model, clt, p, options),
            GraphScore,
        )
        for p in bar
    ]
    return TranscoderScores(spec.name, list(spec.paths), clt.config.kind, asdict(clt.config), scores, graphs)


def graph_score(model: Model, clt: CrossLayerTranscoder, prompt: ParallelPrompt, options: CompareOptions) -> GraphScore:
    """The replacement and completeness scores of ``prompt``'s attribution graph (the logits it predicts)."""
    tokens = tokenize(model, [prompt.prompt], on_too_long="error")[0].to(model_device(model))
    graph = attribute(
        model, clt, tokens, max_features=options.graph_max_features, batch=GraphOptions.batch, prompt=prompt.prompt
    )
    replacement, completeness = graph.scores()
    meta = graph.meta
    return GraphScore(
        prompt.task,
        prompt.item,
        prompt.language,
        replacement,
        completeness,
        int(meta["active_features"]),
        float(meta["unexplained"]),
    )


def compare(
    model: Model,
    corpus: Corpus,
    load: Callable[[TranscoderSpec], CrossLayerTranscoder],
    specs: list[TranscoderSpec],
    prompts: list[ParallelPrompt],
    options: CompareOptions,
    store: Store,
) -> Comparison:
    """Every transcoder of ``specs`` measured on the same verses and prompts, one at a time.

    Args:
        model: The model they replace the MLPs of.
        corpus: The corpus the held-out verses come from.
        load: Reads one transcoder onto the model's device (checked against the model).
        specs: The transcoders, in the order the tables list them.
        prompts: The graph prompts ([`graph_prompts`][workbench.clt.runs.compare_options.graph_prompts]).
        options: How many verses, which graphs.
        store: The store whose run settings (languages, seed, batch size) and parts folder are used.
    """
    documents = store.documents(model, corpus, options.heldout, "heldout")
    measured = []
    for spec in tqdm(specs, desc="transcoders", unit=" transcoder", disable=not store.show_progress):
        clt = load(spec)
        measured.append(measure(model, clt, spec, documents, prompts, options, store))
        del clt  # one transcoder in memory at a time
    return Comparison(
        model_source(model),
        corpus.describe(),
        store.languages,
        store.run.to_dict(),
        options.to_dict(),
        environment(),
        datetime.now(UTC).isoformat(timespec="seconds"),
        measured,
    )


__all__ = [
    "Comparison",
    "GraphScore",
    "LanguageScores",
    "TranscoderScores",
    "ZeroLoss",
    "compare",
    "files_key",
    "gap_recovered",
    "graph_score",
    "load_checked",
    "measure",
    "zero_ablation_loss",
    "zeroed",
]
