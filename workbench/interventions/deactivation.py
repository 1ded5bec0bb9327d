"""Deactivation experiments (MWork verification, docs/methods.md §7; the paper's Tables 1-5).

Switch a language's neurons off (hooks, [`workbench.neurons.masking`][workbench.neurons.masking]) and measure what each language
loses on held-out verses, against random neurons drawn with the same count in every layer and
structure. The layers are split as in MWork into *understanding* (the first N), *task-solving*
(the middle; its attention and its FFN count as separate groups) and *generation* (the last M).

Measures per language ([`Measures`][workbench.interventions.measures.Measures]): next-token loss (nats/token), next-token accuracy,
the *fidelity* of the model's top-1 predictions (teacher-forced: the share of predicted tokens
in the input language among predictions that carry a language label), and optionally the
fidelity of greedy continuations of verse beginnings. Deltas are "how much worse": loss up,
accuracy and fidelity down, so a positive delta is damage, as the paper's Delta_Eng, Delta_nEng
and Delta = Delta_Eng - Delta_nEng.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from workbench.data.batching import DEFAULT_BATCH_TOKENS
from workbench.interventions.measures import (
    MeasureMemo,
    Measures,
    Setting,
    continuation_fidelities,
    in_language,
    measure_many,
    random_like,
    verse_prompts,
)
from workbench.interventions.options import GROUPS, DeactivationOptions
from workbench.neurons.sets import NeuronDims, NeuronSet
from workbench.runs.results import Result

SETTINGS_PER_PASS = 16  # measurements batched together (and saved together: what an interruption can lose)
UNDERSTANDING_SHARE = 0.25
GENERATION_SHARE = 0.125
MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity", "continuation_fidelity")


@dataclass(frozen=True)
class LayerGroups:
    """MWork's layer split: the first ``understanding`` layers, the last ``generation`` layers,
    and the task-solving layers between them.

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
        u = understanding if understanding is not None else min(n_layers, max(1, round(n_layers * UNDERSTANDING_SHARE)))
        # the automatic sizes always fit (a one-layer model has no generation layers); given ones are checked
        g = (
            generation
            if generation is not None
            else max(0, min(n_layers - u, max(1, round(n_layers * GENERATION_SHARE))))
        )
        return cls(n_layers, u, g)

    def layers(self, group: str) -> range:
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
    """Everything one deactivation experiment (one kind of neuron set) measured; saved as part of
    [`AblationResult`][workbench.interventions.deactivation.AblationResult].
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
                    f"baseline {measure}": _round(getattr(self.baseline[lang], measure)),
                    "language-specific: delta": _round(self.delta(self.own["all"][lang], lang, measure)),
                    "random: delta (mean)": _round(mean),
                    "random: delta (sd)": _round(std),
                    "other languages: mean delta": _round(self.mean_cross_delta(lang, measure)),
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
        """Tables 2-5 form: one row per setting (each language with its own set, or random ones
        of the same counts, in a layer group); columns: languages, Delta_Eng, Delta_nEng, Delta.
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
                        **{k: _round(v) for k, v in deltas.items()},
                        **{k: _round(v) for k, v in paper_deltas(deltas).items()},
                    }
                )
        return rows

    def cross_matrix(self, measure: str = "loss") -> np.ndarray:
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


def _round(value) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def run_deactivation(
    model,
    tokens: dict[str, list[torch.Tensor]],
    sets: dict[str, NeuronSet],
    categories: dict[str, np.ndarray],
    options: DeactivationOptions = DeactivationOptions(),
    memo: MeasureMemo | None = None,
    prefix: str = "",
    settings: dict | None = None,
    progress: Callable[[str], None] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    settings_per_pass: int = SETTINGS_PER_PASS,
) -> DeactivationResult:
    """The whole experiment over ``tokens`` (held-out verses per language): baseline; each
    language's own set (restricted to each layer group) and ``options.seeds`` count-matched
    random controls; the cross-language matrix (each language's whole set off, every language
    measured); greedy-continuation fidelity for the baseline, own and random whole sets.

    ``categories``: per language, [`token_categories`][workbench.lens.layer_language.token_categories].
    Measurements go to ``memo`` as they finish and are reused from it: keys start with
    ``prefix`` except the baseline's, which experiments on other sets share. Up to
    ``settings_per_pass`` measurements share forward passes ([`measure_many`][workbench.interventions.measures.measure_many]: one mask per
    batch row), and all continuations share one batch.
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
    plan = [(f"baseline/{lang}", lang, None) for lang in langs]
    plan += [(f"{prefix}cross/{a}/{b}", b, sets[a]) for a in langs for b in langs]
    plan += [
        (f"{prefix}own/{g}/{lang}", lang, own_sets[g][lang]) for g in options.groups if g != "all" for lang in langs
    ]
    plan += [
        (f"{prefix}random/{g}/{seed}/{lang}", lang, s)
        for g in options.groups
        for lang in langs
        for seed, s in enumerate(random_sets[g][lang])
    ]
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
        for g in options.groups
    }
    random = {
        g: {
            lang: [get(f"random/{g}/{seed}/{lang}", lang, s) for seed, s in enumerate(random_sets[g][lang])]
            for lang in langs
        }
        for g in options.groups
    }
    if options.new_tokens > 0:
        prompts = {lang: verse_prompts(tokens[lang], options.prompt_tokens) for lang in langs}
        plan = [("continuation/baseline", dict.fromkeys(langs), [baseline])]
        plan.append((f"{prefix}continuation/own", {lang: own_sets["all"][lang] for lang in langs}, [own["all"]]))
        for seed in range(options.seeds):
            per_lang = {lang: random_sets["all"][lang][seed] for lang in langs}
            plan.append(
                (f"{prefix}continuation/random/{seed}", per_lang, [{lang: random["all"][lang][seed] for lang in langs}])
            )
        pending = [(key, per_lang) for key, per_lang, _ in plan if key not in memo.data]
        if pending:
            found = continuation_fidelities(model, prompts, [p for _, p in pending], vocab, options.new_tokens)
            memo.put_many({key: value for (key, _), value in zip(pending, found)})
            for key, _ in pending:
                tick(key)
        for key, _, targets in plan:
            for target in targets:
                for lang in langs:
                    target[lang].continuation_fidelity = memo.data[key][lang]
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
    """Deactivation experiments side by side, one per kind of neuron set (``plnd``, ``exclusive``,
    ``lape``), on the same held-out verses and baseline.
    """

    experiments: dict[str, DeactivationResult]
    settings: dict = field(default_factory=dict)

    JSON = "deactivation.json"

    @property
    def languages(self) -> list[str]:
        return next(iter(self.experiments.values())).languages if self.experiments else []

    def comparison(self, measure: str = "loss") -> list[dict]:
        """Per set kind and language: the damage to the language whose neurons are off, and the
        mean damage to the other languages (its specificity is the gap between the two).
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
