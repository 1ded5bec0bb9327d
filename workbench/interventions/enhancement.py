"""Enhancing a language by training only its neurons (docs/methods.md §8; MWork Figure 4 and Table 6).

For each target language: train its neuron set
([`train_neurons`][workbench.interventions.finetune.train_neurons]) on the first 100, 200, 400 and
800 of one ordered sample of its documents, and a count-matched random set (same count per layer
and structure) on 400 of them; measure every evaluation language before and after on held-out
verses (loss, next-token accuracy, top-1 fidelity). The paper's claim: the target improves, the
other languages are preserved, and random neurons improve the target less.

Gains are "how much better": loss down, accuracy and fidelity up (positive = better).
Every trained delta is saved as soon as it is trained and every measurement as soon as it is
measured, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS
from workbench.interventions.finetune import NeuronDelta, train_neurons
from workbench.interventions.measures import (
    MeasureMemo,
    Measures,
    Setting,
    in_language,
    measure_many,
    random_like,
    rounded,
)
from workbench.interventions.options import EnhancementOptions, TrainOptions
from workbench.models.model import Model
from workbench.neurons.sets import NeuronDims, NeuronSet
from workbench.runs.results import Result

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("language", "random")
"""The kinds of trained set: the target's own neurons, or a count-matched random control."""
GAIN_MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity")
"""What a gain can be of."""


@dataclass
class EnhancementRun:
    """One training run and every language measured after it.

    A run trains a target's own neurons, or random ones, on ``size`` documents.
    """

    target: str
    kind: str  # "language" or "random"
    size: int
    neurons: int
    record: dict  # TrainRecord.summary(): steps, tokens, seconds, parameters, first/last loss
    losses: list[float]
    after: dict[str, Measures]
    delta_file: str  # relative to the results folder ("" when not saved)

    @property
    def key(self) -> str:
        """``target/kind/size``: the run's name among the measurements and deltas."""
        return f"{self.target}/{self.kind}/{self.size}"


def gain(after: Measures, before: Measures, which: str = "loss") -> float:
    """How much better ``after`` is than ``before``: loss down, accuracy or fidelity up."""
    if which not in GAIN_MEASURES:
        raise ValueError(f"Unknown measure {which!r}; choose from {', '.join(GAIN_MEASURES)}.")
    difference = getattr(after, which) - getattr(before, which)
    return -difference if which == "loss" else difference


@dataclass
class EnhancementResult(Result):
    """Everything an enhancement experiment measured."""

    languages: list[str]  # evaluated languages
    targets: list[str]
    baseline: dict[str, Measures]
    runs: list[EnhancementRun]
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    JSON = "finetune.json"

    def gain(self, run: EnhancementRun, language: str, which: str = "loss") -> float:
        """How much better ``language`` is after ``run`` than at the baseline."""
        return gain(run.after[language], self.baseline[language], which)

    def others_gain(self, run: EnhancementRun, which: str = "loss") -> float:
        """Mean gain over the evaluated languages other than the target and English."""
        values = [self.gain(run, lang, which) for lang in self.languages if lang not in (run.target, "en")]
        return float(np.mean(values)) if values else math.nan

    def table(self, which: str = "loss") -> list[dict]:
        """Figure 4 / Table 6 form: per run, the gain of the target, of English and of the other languages.

        The other languages' gain is their mean and their worst; each row has the training cost.
        """
        rows = []
        for run in self.runs:
            others = [self.gain(run, lang, which) for lang in self.languages if lang not in (run.target, "en")]
            rows.append(
                {
                    "target": run.target,
                    "neurons": run.kind,
                    "documents": run.size,
                    "trained neurons": run.neurons,
                    "trained parameters": run.record["parameters"],
                    "train tokens": run.record["tokens"],
                    "train seconds": run.record["seconds"],
                    f"target {which} before": rounded(getattr(self.baseline[run.target], which)),
                    "target gain": rounded(self.gain(run, run.target, which)),
                    "English gain": rounded(self.gain(run, "en", which))
                    if "en" in self.languages and run.target != "en"
                    else None,
                    "other languages: mean gain": rounded(float(np.mean(others)) if others else math.nan),
                    "other languages: worst gain": rounded(min(others) if others else math.nan),
                }
            )
        return rows

    def gain_matrix(self, which: str = "loss") -> Float[np.ndarray, "run language"]:
        """``[run, evaluated language]`` gains (rows in ``runs`` order)."""
        return np.array([[self.gain(run, lang, which) for lang in self.languages] for run in self.runs], dtype=float)


_Vocab = dict[str, tuple[Bool[np.ndarray, " d_vocab"], Bool[np.ndarray, " d_vocab"]]]  # language -> (own, labelled)


def _trained(
    model: Model,
    neurons: NeuronSet,
    documents: Sequence[Int[torch.Tensor, " pos"]],
    options: TrainOptions,
    path: Path | None,
    meta: dict[str, Any],
    label: str,
    progress: Callable[[str], None],
) -> NeuronDelta:
    """A saved delta made with the same settings, or a new one (saved at once)."""
    if path is not None and path.exists():
        saved = NeuronDelta.load(path)
        same = saved.meta.get("train_options") == asdict(options) and saved.meta.get("train_documents") == len(
            documents
        )
        if same and saved.neurons.to_dict() == neurons.to_dict():
            log.info("finetune %s: reusing %s", label, path)
            return saved
    delta, record = train_neurons(
        model, neurons, documents, options, progress=lambda step, loss: progress(f"{label} step {step} loss {loss:.3f}")
    )
    delta.meta.update(meta, losses=record.losses)
    if path is not None:
        delta.save(path)
    return delta


def _evaluate(
    model: Model,
    key: str,
    delta: NeuronDelta | None,
    evaluation: dict[str, list[Int[torch.Tensor, " pos"]]],
    vocab: _Vocab,
    memo: MeasureMemo,
    batch_tokens: int,
    tick: Callable[[str], None],
) -> dict[str, Measures]:
    """Every evaluated language with ``delta`` applied, in shared batches; what ``memo`` has is reused.

    The batches are [`measure_many`][workbench.interventions.measures.measure_many]'s.
    """
    pending = [lang for lang in evaluation if f"{key}/{lang}" not in memo.data]
    if pending:
        tick(f"{key}: measure {', '.join(pending)}")
        settings = [Setting(evaluation[lang], *vocab[lang]) for lang in pending]
        with delta.applied(model) if delta is not None else nullcontext():
            found = measure_many(model, settings, batch_tokens)
        memo.put_many({f"{key}/{lang}": value for lang, value in zip(pending, found)})
    return {lang: memo[f"{key}/{lang}"] for lang in evaluation}


def _target_runs(
    model: Model,
    target: str,
    documents: list[Int[torch.Tensor, " pos"]],
    neurons: NeuronSet,
    options: EnhancementOptions,
    seed: int,
    where: tuple[Path | None, str],
    evaluate: Callable[[str, NeuronDelta], dict[str, Measures]],
    tick: Callable[[str], None],
) -> list[EnhancementRun]:
    """One target's runs: its own set on each size, then the random control, each trained and measured.

    ``where``: the results folder (None: deltas are not saved) and the deltas' subfolder.
    """
    folder, deltas = where
    train = options.train(seed)
    plan = [("language", size, neurons) for size in options.sizes]
    if options.random_size:
        plan.append(("random", options.random_size, random_like(neurons, NeuronDims.of(model), seed)))
    runs = []
    for kind, size, trained_set in plan:
        key = f"{target}/{kind}/{size}"
        name = f"{target}-{kind}-{size}.safetensors"
        path = Path(folder) / deltas / name if folder is not None else None
        meta = {"target": target, "kind": kind, "documents": size}
        delta = _trained(model, trained_set, documents[:size], train, path, meta, key, tick)
        runs.append(
            EnhancementRun(
                target,
                kind,
                size,
                len(trained_set),
                dict(delta.meta["record"]),
                list(delta.meta.get("losses", [])),
                evaluate(key, delta),
                f"{deltas}/{name}" if path is not None else "",
            )
        )
    return runs


def run_enhancement(
    model: Model,
    documents: dict[str, list[Int[torch.Tensor, " pos"]]],
    sets: dict[str, NeuronSet],
    evaluation: dict[str, list[Int[torch.Tensor, " pos"]]],
    categories: dict[str, Int[np.ndarray, " d_vocab"]],
    options: EnhancementOptions = EnhancementOptions(),
    folder: Path | None = None,
    deltas: str = "finetune",
    memo: MeasureMemo | None = None,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> EnhancementResult:
    """The experiment: train every target's set on each size and a random control; measure before and after.

    Args:
        model: The base model (left as it was: deltas are applied only while measuring).
        documents: Per target, its training documents in order (a run on ``size`` takes the first
            ``size``).
        sets: Per target, the neuron set it trains.
        evaluation: Per evaluated language, its held-out documents.
        categories: Per evaluated language, every token's category
            ([`token_categories`][workbench.lens.layer_language.token_categories]).
        options: Sizes, the random control and training settings.
        folder: Where the deltas go (``folder/<deltas>/``), reused by a resumed run; None: not saved.
        deltas: The deltas' subfolder.
        memo: Measurements, saved as they finish and reused.
        seed: Seeds the training order and the random control.
        settings: The run's settings, recorded in the result.
        progress: Called with a line per training step and measurement.
        batch_tokens: Padded tokens per measuring forward pass.

    Returns:
        The baseline and every run with the languages measured after it.

    Raises:
        ValueError: A target has fewer training documents than the largest run needs.
    """
    short = [t for t in documents if len(documents[t]) < options.documents_needed]
    if short:
        raise ValueError(f"{', '.join(short)}: fewer than {options.documents_needed} training documents.")
    tick = progress or (lambda label: None)
    vocab = {lang: in_language(categories[lang], lang) for lang in evaluation}
    kept = memo or MeasureMemo(None)

    def evaluate(key: str, delta: NeuronDelta | None) -> dict[str, Measures]:
        return _evaluate(model, key, delta, evaluation, vocab, kept, batch_tokens, tick)

    baseline = evaluate("baseline", None)
    runs = []
    for target in documents:
        runs += _target_runs(
            model, target, documents[target], sets[target], options, seed, (folder, deltas), evaluate, tick
        )
    return EnhancementResult(list(evaluation), list(documents), baseline, runs, options.to_dict(), dict(settings or {}))
