"""Deactivation experiments (MWork verification, docs/methods.md §7; the paper's Tables 1-5).

Switch a language's neurons off (hooks, [`workbench.neurons.masking`][workbench.neurons.masking])
and measure what each language loses on held-out verses, against random neurons drawn with the same
count in every layer and structure. The layers are split as in MWork into *understanding* (the
first N), *task-solving* (the middle; its attention and its FFN count as separate groups) and
*generation* (the last M).

Measures per language ([`Measures`][workbench.interventions.measures.Measures]): next-token loss
(nats/token), next-token accuracy, the *fidelity* of the model's top-1 predictions (teacher-forced:
the share of predicted tokens in the input language among predictions that carry a language
label), and optionally the fidelity of greedy continuations of verse beginnings. Deltas are "how
much worse": loss up, accuracy and fidelity down, so a positive delta is damage, as the paper's
Delta_Eng, Delta_nEng and Delta = Delta_Eng - Delta_nEng.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS
from workbench.interventions.measures import (
    MeasureMemo,
    Measures,
    Setting,
    continuation_fidelities,
    in_language,
    measure_many,
    random_like,
    rounded,
    verse_prompts,
)
from workbench.interventions.options import GROUPS, DeactivationOptions
from workbench.models.model import Model
from workbench.neurons.sets import NeuronDims, NeuronSet
from workbench.runs.results import Result

SETTINGS_PER_PASS = 16
"""Measurements batched together (and saved together: what an interruption can lose)."""
UNDERSTANDING_SHARE = 0.25
"""The default understanding layers: this share of the depth."""
GENERATION_SHARE = 0.125
"""The default generation layers: this share of the depth."""
MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity", "continuation_fidelity")
"""What every setting measures (the ``measure`` the tables take)."""


@dataclass(frozen=True)
class LayerGroups:
    """MWork's layer split: the first ``understanding`` layers, the last ``generation``, task-solving between.

    The paper tuned N and M on Chinese XQuAD for 32-layer models (its Appendix F, whose values
    we do not have). The defaults here are ours: the first quarter and the last eighth of the depth
    (8 and 4 of 32 layers; 4 and 2 of Gemma 3 270M's 18).
    """

    n_layers: int
    understanding: int
    generation: int

    def __post_init__(self) -> None:
        if self.understanding < 0 or self.generation < 0 or self.understanding + self.generation > self.n_layers:
            raise ValueError(
                f"{self.understanding} understanding + {self.generation} generation layers do not fit "
                f"in {self.n_layers} layers."
            )

    @classmethod
    def default(cls, n_layers: int, understanding: int | None = None, generation: int | None = None) -> LayerGroups:
        """The split of ``n_layers``: the sizes given, else the first quarter and the last eighth."""
        u = understanding if understanding is not None else min(n_layers, max(1, round(n_layers * UNDERSTANDING_SHARE)))
        # the automatic sizes always fit (a one-layer model has no generation layers); given ones are checked
        g = (
            generation
            if generation is not None
            else max(0, min(n_layers - u, max(1, round(n_layers * GENERATION_SHARE))))
        )
        return cls(n_layers, u, g)

    def layers(self, group: str) -> range:
        """The layers of a group (``all``, ``understanding``, ``task_attention``, ``task_ffn``, ``generation``)."""
        if group == "all":
            return range(self.n_layers)
        if group == "understanding":
            return range(self.understanding)
        if group == "generation":
            return range(self.n_layers - self.generation, self.n_layers)
        if group in ("task_attention", "task_ffn"):
            return range(self.understanding, self.n_layers - self.generation)
        raise ValueError(f"Unknown layer group {group!r}; choose from {', '.join(GROUPS)}.")

    def restrict(self, neurons: NeuronSet, group: str) -> NeuronSet:
        """The neurons of ``neurons`` in a group's layers (and, for task groups, structures)."""
        layers = self.layers(group)
        keep = {}
        for s, rows in neurons.neurons.items():
            if (group == "task_ffn" and s != "ffn") or (group == "task_attention" and s == "ffn"):
                continue
            keep[s] = rows[(rows[:, 0] >= layers.start) & (rows[:, 0] < layers.stop)]
        return NeuronSet(keep)


# ----------------------------------------------------------------------------- the experiment


@dataclass
class DeactivationResult(Result):
    """Everything one deactivation experiment (one kind of neuron set) measured.

    Saved as part of [`AblationResult`][workbench.interventions.deactivation.AblationResult].
    """

    languages: list[str]
    layer_groups: dict[str, int]
    baseline: dict[str, Measures]
    own: dict[str, dict[str, Measures]]  # group -> language -> its own set (in that group) off
    random: dict[str, dict[str, list[Measures]]]  # group -> language -> one per seed
    cross: dict[str, dict[str, Measures]]  # switched-off language -> measured language
    set_sizes: dict[str, dict[str, int]]  # group -> language -> neurons switched off
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------- tables
    def delta(self, measures: Measures, language: str, measure: str = "loss") -> float | None:
        """The damage of ``measures`` over the language's baseline (None: not measured)."""
        return measures.delta(self.baseline[language])[measure]

    def random_delta(self, group: str, language: str, measure: str = "loss") -> tuple[float, float]:
        """Mean and standard deviation over seeds of the random control's delta."""
        values = [self.delta(m, language, measure) for m in self.random[group][language]]
        values = np.array([v for v in values if v is not None], dtype=float)
        if not len(values):
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def table1(self, measure: str = "loss") -> list[dict]:
        """The paper's Table 1 form: per language, its own neurons off vs as many random ones."""
        rows = []
        for lang in self.languages:
            mean, std = self.random_delta("all", lang, measure)
            rows.append(
                {
                    "language": lang,
                    "neurons off": self.set_sizes["all"][lang],
                    f"baseline {measure}": rounded(getattr(self.baseline[lang], measure)),
                    "language-specific: delta": rounded(self.delta(self.own["all"][lang], lang, measure)),
                    "random: delta (mean)": rounded(mean),
                    "random: delta (sd)": rounded(std),
                    "other languages: mean delta": rounded(self.mean_cross_delta(lang, measure)),
                }
            )
        return rows

    def mean_cross_delta(self, switched_off_language: str, measure: str = "loss") -> float:
        """Mean delta over the *other* languages when one language's neurons are off."""
        values = [
            self.delta(m, b, measure)
            for b, m in self.cross[switched_off_language].items()
            if b != switched_off_language
        ]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else math.nan

    def settings_table(self, measure: str = "loss") -> list[dict]:
        """Tables 2-5 form: one row per setting; columns: languages, Delta_Eng, Delta_nEng, Delta.

        A setting is each language with its own set, or random ones of the same counts, in a layer
        group.
        """
        rows = []
        for group in self.own:
            for kind in ("language-specific", "random"):
                deltas = {}
                for lang in self.languages:
                    if kind == "random":
                        deltas[lang] = self.random_delta(group, lang, measure)[0]
                    else:
                        value = self.delta(self.own[group][lang], lang, measure)
                        deltas[lang] = math.nan if value is None else value
                rows.append(
                    {
                        "setting": f"{kind} · {group}",
                        **{k: rounded(v) for k, v in deltas.items()},
                        **{k: rounded(v) for k, v in paper_deltas(deltas).items()},
                    }
                )
        return rows

    def cross_matrix(self, measure: str = "loss") -> Float[np.ndarray, "language language"]:
        """``[switched off, measured]`` deltas (rows: whose neurons are off)."""
        return np.array(
            [
                [
                    self.delta(self.cross[a][b], b, measure)
                    if self.delta(self.cross[a][b], b, measure) is not None
                    else math.nan
                    for b in self.languages
                ]
                for a in self.languages
            ],
            dtype=float,
        )


def paper_deltas(deltas: dict[str, float]) -> dict[str, float]:
    """Delta_Eng, Delta_nEng (mean over non-English languages) and Delta = Delta_Eng - Delta_nEng."""
    d_eng = deltas.get("en", math.nan)
    others = [v for k, v in deltas.items() if k != "en" and not math.isnan(v)]
    d_neng = float(np.mean(others)) if others else math.nan
    return {"Delta_Eng": d_eng, "Delta_nEng": d_neng, "Delta": d_eng - d_neng}


_Plan = list[tuple[str, str, NeuronSet | None]]  # (memo key, measured language, neurons off or None)
_Vocab = dict[str, tuple[Bool[np.ndarray, " d_vocab"], Bool[np.ndarray, " d_vocab"]]]  # language -> (own, labelled)
_ByLanguage = dict[str, Measures]


def _plan(
    langs: list[str],
    groups: tuple[str, ...],
    sets: dict[str, NeuronSet],
    own_sets: dict[str, dict[str, NeuronSet]],
    random_sets: dict[str, dict[str, list[NeuronSet]]],
    prefix: str,
) -> _Plan:
    """Every teacher-forced measurement: baselines, the cross matrix, own sets per group, controls."""
    plan: _Plan = [(f"baseline/{lang}", lang, None) for lang in langs]
    plan += [(f"{prefix}cross/{a}/{b}", b, sets[a]) for a in langs for b in langs]
    plan += [(f"{prefix}own/{g}/{lang}", lang, own_sets[g][lang]) for g in groups if g != "all" for lang in langs]
    plan += [
        (f"{prefix}random/{g}/{seed}/{lang}", lang, s)
        for g in groups
        for lang in langs
        for seed, s in enumerate(random_sets[g][lang])
    ]
    return plan


def _measure_plan(
    model: Model,
    plan: _Plan,
    memo: MeasureMemo,
    tokens: dict[str, list[Int[torch.Tensor, " pos"]]],
    vocab: _Vocab,
    batch_tokens: int,
    settings_per_pass: int,
    tick: Callable[[str], None],
) -> None:
    """Measure what ``memo`` lacks of ``plan`` (nothing for an empty set), ``settings_per_pass`` at a time."""
    pending = [
        (key, lang, neurons)
        for key, lang, neurons in plan
        if key not in memo.data and (neurons is None or len(neurons))
    ]
    for start in range(0, len(pending), settings_per_pass):
        chunk = pending[start : start + settings_per_pass]
        found = measure_many(
            model, [Setting(tokens[lang], *vocab[lang], neurons) for _, lang, neurons in chunk], batch_tokens
        )
        memo.put_many({key: value for (key, _, _), value in zip(chunk, found)})
        for key, _, _ in chunk:
            tick(key)


def _read(
    memo: MeasureMemo,
    prefix: str,
    langs: list[str],
    groups: tuple[str, ...],
    sets: dict[str, NeuronSet],
    own_sets: dict[str, dict[str, NeuronSet]],
    random_sets: dict[str, dict[str, list[NeuronSet]]],
) -> tuple[_ByLanguage, dict[str, _ByLanguage], dict[str, _ByLanguage], dict[str, dict[str, list[Measures]]]]:
    """The measures of the plan from ``memo``: baseline, cross matrix, own sets and controls per group.

    An empty set switches nothing off, so it reads as (a copy of) the baseline; a group's ``all``
    own set is the cross matrix's diagonal.
    """

    def get(key: str, lang: str, neurons: NeuronSet | None) -> Measures:
        if neurons is not None and len(neurons) == 0:
            return Measures(**asdict(baseline[lang]))  # nothing switched off
        return memo[key if neurons is None else prefix + key]

    baseline = {lang: get(f"baseline/{lang}", lang, None) for lang in langs}
    cross = {a: {b: get(f"cross/{a}/{b}", b, sets[a]) for b in langs} for a in langs}
    own = {
        g: {
            lang: cross[lang][lang] if g == "all" else get(f"own/{g}/{lang}", lang, own_sets[g][lang]) for lang in langs
        }
        for g in groups
    }
    random = {
        g: {
            lang: [get(f"random/{g}/{seed}/{lang}", lang, s) for seed, s in enumerate(random_sets[g][lang])]
            for lang in langs
        }
        for g in groups
    }
    return baseline, cross, own, random


_Continuations = list[tuple[str, dict[str, NeuronSet | None], _ByLanguage]]  # (memo key, sets off, measures)


def _continuation_plan(
    prefix: str,
    seeds: int,
    own_sets: dict[str, NeuronSet],
    random_sets: dict[str, list[NeuronSet]],
    measured: tuple[_ByLanguage, _ByLanguage, dict[str, list[Measures]]],
) -> _Continuations:
    """The continuations to measure: the baseline, the whole own sets, and each seed's random sets.

    ``measured``: the baseline, own and random measures per language, which receive the results.
    """
    baseline, own, random = measured
    langs = list(baseline)
    plan: _Continuations = [
        ("continuation/baseline", dict.fromkeys(langs), baseline),
        (f"{prefix}continuation/own", {lang: own_sets[lang] for lang in langs}, own),
    ]
    for seed in range(seeds):
        per_lang: dict[str, NeuronSet | None] = {lang: random_sets[lang][seed] for lang in langs}
        plan.append((f"{prefix}continuation/random/{seed}", per_lang, {lang: random[lang][seed] for lang in langs}))
    return plan


def _continuations(
    model: Model,
    plan: _Continuations,
    tokens: dict[str, list[Int[torch.Tensor, " pos"]]],
    vocab: _Vocab,
    options: DeactivationOptions,
    memo: MeasureMemo,
    tick: Callable[[str], None],
) -> None:
    """Greedy-continuation fidelity of each ``(memo key, sets off per language, measures)`` of ``plan``.

    What ``memo`` lacks is measured in one batch; each measure's ``continuation_fidelity`` is set.
    """
    prompts = {lang: verse_prompts(tokens[lang], options.prompt_tokens) for lang in tokens}
    pending = [(key, per_lang) for key, per_lang, _ in plan if key not in memo.data]
    if pending:
        found = continuation_fidelities(model, prompts, [p for _, p in pending], vocab, options.new_tokens)
        memo.put_many({key: value for (key, _), value in zip(pending, found)})
        for key, _ in pending:
            tick(key)
    for key, _, target in plan:
        for lang in tokens:
            target[lang].continuation_fidelity = memo.data[key][lang]


def run_deactivation(
    model: Model,
    tokens: dict[str, list[Int[torch.Tensor, " pos"]]],
    sets: dict[str, NeuronSet],
    categories: dict[str, Int[np.ndarray, " d_vocab"]],
    options: DeactivationOptions = DeactivationOptions(),
    memo: MeasureMemo | None = None,
    prefix: str = "",
    settings: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    settings_per_pass: int = SETTINGS_PER_PASS,
) -> DeactivationResult:
    """The whole experiment over ``tokens``, each language's held-out verses (token ids, BOS first).

    Measures the baseline; each language's own set (restricted to each layer group) and
    ``options.seeds`` count-matched random controls; the cross-language matrix (each language's
    whole set off, every language measured); greedy-continuation fidelity for the baseline, own and
    random whole sets. ``categories``: per language, every token's category
    ([`token_categories`][workbench.lens.layer_language.token_categories]).

    Measurements go to ``memo`` as they finish and are reused from it: keys start with ``prefix``
    except the baseline's, which experiments on other sets share. Up to ``settings_per_pass``
    measurements share forward passes ([`measure_many`][workbench.interventions.measures.measure_many]:
    one mask per batch row), and all continuations share one batch. ``progress`` is called with
    each finished key; ``settings`` (the run's) are recorded in the result.
    """
    langs = list(tokens)
    dims = NeuronDims.of(model)
    groups = LayerGroups.default(dims.n_layers, options.understanding, options.generation)
    memo = memo or MeasureMemo(None)
    vocab = {lang: in_language(categories[lang], lang) for lang in langs}
    tick = progress or (lambda label: None)
    own_sets = {g: {lang: groups.restrict(sets[lang], g) for lang in langs} for g in options.groups}
    random_sets = {
        g: {lang: [random_like(own_sets[g][lang], dims, seed) for seed in range(options.seeds)] for lang in langs}
        for g in options.groups
    }
    plan = _plan(langs, options.groups, sets, own_sets, random_sets, prefix)
    _measure_plan(model, plan, memo, tokens, vocab, batch_tokens, settings_per_pass, tick)
    baseline, cross, own, random = _read(memo, prefix, langs, options.groups, sets, own_sets, random_sets)
    if options.new_tokens > 0:
        whole = (baseline, own["all"], random["all"])
        continuations = _continuation_plan(prefix, options.seeds, own_sets["all"], random_sets["all"], whole)
        _continuations(model, continuations, tokens, vocab, options, memo, tick)
    return DeactivationResult(
        languages=langs,
        layer_groups=asdict(groups),
        baseline=baseline,
        own=own,
        random=random,
        cross=cross,
        set_sizes={g: {lang: len(s) for lang, s in own_sets[g].items()} for g in options.groups},
        options=options.to_dict(),
        settings=dict(settings or {}),
    )


@dataclass
class AblationResult(Result):
    """Deactivation experiments side by side, one per kind of neuron set, on the same verses and baseline.

    The kinds are ``plnd``, ``exclusive`` and ``lape``; the held-out verses and the baseline are
    shared.
    """

    experiments: dict[str, DeactivationResult]
    settings: dict = field(default_factory=dict)

    JSON = "deactivation.json"

    @property
    def languages(self) -> list[str]:
        """The measured languages (the experiments share them)."""
        return next(iter(self.experiments.values())).languages if self.experiments else []

    def comparison(self, measure: str = "loss") -> list[dict]:
        """Per set kind and language: the damage to the language whose neurons are off, and to the others.

        The others' damage is their mean; the set's specificity is the gap between the two.
        """
        rows = []
        for kind, result in self.experiments.items():
            for row in result.table1(measure):
                own, others = row["language-specific: delta"], row["other languages: mean delta"]
                rows.append(
                    {
                        "sets": kind,
                        "language": row["language"],
                        "neurons off": row["neurons off"],
                        "own language: delta": own,
                        "other languages: mean delta": others,
                        "random: delta (mean)": row["random: delta (mean)"],
                        "own minus others": None if own is None or others is None else round(own - others, 4),
                    }
                )
        return rows
