"""Deactivation experiments (MWork verification, docs/methods.md §7; the paper's Tables 1-5).

Switch a language's neurons off (hooks, [`workbench.neurons.masking`][workbench.neurons.masking])
and measure what each language loses on held-out verses, against random neurons drawn with the same
count in every layer and structure, in all layers and in each of MWork's layer groups
([`LayerGroups`][workbench.interventions.layer_groups.LayerGroups]).

Measures per language ([`Measures`][workbench.interventions.measures.Measures]): next-token loss
(nats/token), next-token accuracy, the *fidelity* of the model's top-1 predictions (teacher-forced:
the share of predicted tokens in the input language among predictions that carry a language
label), and optionally the fidelity of greedy continuations of verse beginnings.

[`run_deactivation`][workbench.interventions.deactivation.run_deactivation] plans every
measurement under a key, measures what the memo lacks, many settings per forward pass, and reads
the plan back into a [`DeactivationResult`][workbench.interventions.deactivation_results.DeactivationResult]
(the tables are there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS
from workbench.interventions.deactivation_results import DeactivationResult
from workbench.interventions.layer_groups import LayerGroups
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
from workbench.interventions.options import DeactivationOptions
from workbench.models.model import Model
from workbench.neurons.sets import NeuronDims, NeuronSet

SETTINGS_PER_PASS = 16
"""Measurements batched together (and saved together: what an interruption can lose)."""


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


__all__ = ["SETTINGS_PER_PASS", "run_deactivation"]
