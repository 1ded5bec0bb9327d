"""Enhancing a language by training only its neurons (docs/methods.md §8; MWork Figure 4 and Table 6).

For each target language: train its neuron set ([`workbench.interventions.finetune.train_neurons`][workbench.interventions.finetune.train_neurons]) on
the first 100, 200, 400 and 800 of one ordered sample of its documents, and a count-matched
random set (same count per layer and structure) on 400 of them; measure every evaluation
language before and after on held-out verses (loss, next-token accuracy, top-1 fidelity). The
paper's claim: the target improves, the other languages are preserved, and random neurons
improve the target less.

Gains are "how much better": loss down, accuracy and fidelity up (positive = better).
Every trained delta is saved as soon as it is trained and every measurement as soon as it is
measured, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.data.batching import DEFAULT_BATCH_TOKENS
from workbench.interventions.finetune import NeuronDelta, train_neurons
from workbench.interventions.measures import MeasureMemo, Measures, Setting, in_language, measure_many, random_like
from workbench.interventions.options import EnhancementOptions, TrainOptions
from workbench.neurons.sets import NeuronDims, NeuronSet
from workbench.runs.results import Result

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("language", "random")
GAIN_MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity")


@dataclass
class EnhancementRun:
    """One training run (a target's own neurons or random ones, on ``size`` documents) and every
    language measured after it.
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
        return gain(run.after[language], self.baseline[language], which)

    def others_gain(self, run: EnhancementRun, which: str = "loss") -> float:
        """Mean gain over the evaluated languages other than the target and English."""
        values = [self.gain(run, lang, which) for lang in self.languages if lang not in (run.target, "en")]
        return float(np.mean(values)) if values else math.nan

    def table(self, which: str = "loss") -> list[dict]:
        """Figure 4 / Table 6 form: per run, the gain of the target, of English, and of the other
        languages (mean, and the largest loss among them), with the training cost.
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
                    f"target {which} before": _round(getattr(self.baseline[run.target], which)),
                    "target gain": _round(self.gain(run, run.target, which)),
                    "English gain": _round(self.gain(run, "en", which))
                    if "en" in self.languages and run.target != "en"
                    else None,
                    "other languages: mean gain": _round(float(np.mean(others)) if others else math.nan),
                    "other languages: worst gain": _round(min(others) if others else math.nan),
                }
            )
        return rows

    def gain_matrix(self, which: str = "loss") -> np.ndarray:
        """``[run, evaluated language]`` gains (rows in ``runs`` order)."""
        return np.array([[self.gain(run, lang, which) for lang in self.languages] for run in self.runs], dtype=float)


def _round(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def _trained(model, neurons, documents, options: TrainOptions, path: Path | None, meta: dict, label: str, progress):
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


def run_enhancement(
    model,
    documents: dict[str, list[torch.Tensor]],
    sets: dict[str, NeuronSet],
    evaluation: dict[str, list[torch.Tensor]],
    categories: dict[str, np.ndarray],
    options: EnhancementOptions = EnhancementOptions(),
    folder: Path | None = None,
    deltas: str = "finetune",
    memo: MeasureMemo | None = None,
    seed: int = 0,
    settings: dict | None = None,
    progress: Callable[[str], None] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> EnhancementResult:
    """The experiment: for every target in ``documents`` (its training documents, in order; the
    first ``size`` are used), train its set from ``sets`` on each size and a random control;
    measure every language of ``evaluation`` (held-out documents) before and after.

    ``categories``: per evaluated language, [`token_categories`][workbench.lens.layer_language.token_categories].
    With ``folder`` the deltas go to ``folder/<deltas>/`` and are reused by a resumed run, as
    are the measurements in ``memo``. ``seed`` seeds the training order and the random control.
    """
    short = [t for t in documents if len(documents[t]) < options.documents_needed]
    if short:
        raise ValueError(f"{', '.join(short)}: fewer than {options.documents_needed} training documents.")
    tick = progress or (lambda label: None)
    langs = list(evaluation)
    vocab = {lang: in_language(categories[lang], lang) for lang in langs}
    memo = memo or MeasureMemo(None)
    train = options.train(seed)
    dims = NeuronDims.of(model)

    def evaluate(key: str, delta: NeuronDelta | None) -> dict[str, Measures]:
        """Every language in shared batches ([`measure_many`][workbench.interventions.measures.measure_many]), with the delta applied."""
        pending = [lang for lang in langs if f"{key}/{lang}" not in memo.data]
        if pending:
            tick(f"{key}: measure {', '.join(pending)}")
            settings = [Setting(evaluation[lang], *vocab[lang]) for lang in pending]
            with delta.applied(model) if delta is not None else nullcontext():
                found = measure_many(model, settings, batch_tokens)
            memo.put_many({f"{key}/{lang}": value for lang, value in zip(pending, found)})
        return {lang: memo[f"{key}/{lang}"] for lang in langs}

    baseline = evaluate("baseline", None)
    runs = []
    for target in documents:
        plan = [("language", size, sets[target]) for size in options.sizes]
        if options.random_size:
            plan.append(("random", options.random_size, random_like(sets[target], dims, seed)))
        for kind, size, neurons in plan:
            key = f"{target}/{kind}/{size}"
            name = f"{target}-{kind}-{size}.safetensors"
            path = Path(folder) / deltas / name if folder is not None else None
            meta = {"target": target, "kind": kind, "documents": size}
            delta = _trained(model, neurons, documents[target][:size], train, path, meta, key, tick)
            runs.append(
                EnhancementRun(
                    target,
                    kind,
                    size,
                    len(neurons),
                    dict(delta.meta["record"]),
                    list(delta.meta.get("losses", [])),
                    evaluate(key, delta),
                    f"{deltas}/{name}" if path is not None else "",
                )
            )
    return EnhancementResult(langs, list(documents), baseline, runs, options.to_dict(), dict(settings or {}))
