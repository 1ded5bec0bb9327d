"""Measuring a model as it is hooked now, shared by deactivation, fine-tuning and tasks.

Per language ([`Measures`][workbench.interventions.measures.Measures]): next-token loss
(nats/token), next-token accuracy, and the *fidelity* of the model's top-1 predictions
(teacher-forced: the share of predicted tokens in the input language among predictions that carry
a language label), and optionally the fidelity of greedy continuations of verse beginnings. Also:
count-matched random neuron sets (the controls), and
[`MeasureMemo`][workbench.interventions.measures.MeasureMemo], measurements saved as they finish so
an interrupted experiment resumes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int

from workbench.data.batching import DEFAULT_BATCH_TOKENS, iter_batches, pad_id_of
from workbench.lens.layer_language import ENGLISH, INPUT, OTHER
from workbench.lens.readout import greedy, next_token_predictions
from workbench.models.model import Model
from workbench.neurons.masking import switched_off
from workbench.neurons.sets import NeuronDims, NeuronSet, structure_size
from workbench.runs.distributed import on_main
from workbench.runs.results import load_json, save_json


def random_like(neurons: NeuronSet, dims: NeuronDims, seed: int) -> NeuronSet:
    """Random neurons with the same count in every layer and structure as ``neurons``."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, rows in neurons.neurons.items():
        picked = []
        layers, counts = np.unique(rows[:, 0], return_counts=True)
        for layer, count in zip(layers, counts):
            for index in rng.choice(structure_size(dims, s), size=count, replace=False):
                picked.append((layer, index))
        out[s] = picked
    return NeuronSet(out)


def rounded(value: float | None) -> float | None:
    """A table's number: rounded to 4 decimals, None for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


@dataclass
class Measures:
    """One language under one setting, over its held-out verses.

    Attributes:
        loss: Mean next-token loss (nats/token).
        accuracy: Share of next tokens predicted exactly (top-1).
        fidelity: Share of language-labelled top-1 predictions in the input language.
        n_tokens: Next tokens predicted.
        continuation_fidelity: The same share over greedy continuations of verse beginnings
            (None: not measured).
    """

    loss: float
    accuracy: float
    fidelity: float
    n_tokens: int
    continuation_fidelity: float | None = None

    def delta(self, baseline: Measures) -> dict[str, float | None]:
        """Damage relative to ``baseline``: loss up, accuracy and fidelities down (positive = worse)."""
        out: dict[str, float | None] = {
            "loss": self.loss - baseline.loss,
            "accuracy": baseline.accuracy - self.accuracy,
            "fidelity": baseline.fidelity - self.fidelity,
        }
        if self.continuation_fidelity is not None and baseline.continuation_fidelity is not None:
            out["continuation_fidelity"] = baseline.continuation_fidelity - self.continuation_fidelity
        else:
            out["continuation_fidelity"] = None
        return out


def in_language(
    categories: Int[np.ndarray, " d_vocab"], language: str
) -> tuple[Bool[np.ndarray, " d_vocab"], Bool[np.ndarray, " d_vocab"]]:
    """Boolean vocabulary masks: tokens of ``language``, and tokens that carry any language label.

    Args:
        categories: Every token's category, from
            [`token_categories`][workbench.lens.layer_language.token_categories].
        language: The input language (its tokens are ``INPUT``, or ``ENGLISH`` for ``en``).

    Returns:
        ``(own, labelled)``: the language's tokens, and those labelled English, the input
        language or another language.
    """
    own = categories == (ENGLISH if language == "en" else INPUT)
    labelled = np.isin(categories, (ENGLISH, INPUT, OTHER))
    return own, labelled


@torch.no_grad()
def measure(
    model: Model,
    tokens: Sequence[Int[torch.Tensor, " pos"]],
    own: Bool[np.ndarray, " d_vocab"],
    labelled: Bool[np.ndarray, " d_vocab"],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> Measures:
    """Loss, accuracy and top-1 fidelity of the model (as it is hooked now) over ``tokens``."""
    return measure_many(model, [Setting(tokens, own, labelled)], batch_tokens)[0]


@dataclass
class Setting:
    """One measurement of [`measure_many`][workbench.interventions.measures.measure_many].

    Attributes:
        tokens: A language's documents (token ids, BOS first).
        own: Vocabulary mask of the language's tokens.
        labelled: Vocabulary mask of the tokens that carry a language label.
        neurons: The neurons switched off while measuring (None: none).
    """

    tokens: Sequence[Int[torch.Tensor, " pos"]]
    own: Bool[np.ndarray, " d_vocab"]
    labelled: Bool[np.ndarray, " d_vocab"]
    neurons: NeuronSet | None = None


@torch.no_grad()
def measure_many(model: Model, settings: Sequence[Setting], batch_tokens: int = DEFAULT_BATCH_TOKENS) -> list[Measures]:
    """[`measure`][workbench.interventions.measures.measure] for many settings in shared forward passes.

    Every (setting, document) is a batch row with its own mask
    ([`switched_off`][workbench.neurons.masking.switched_off] with per-row sets), so small
    measurements fill whole batches. Equal to measuring one setting at a time (the same sums, added
    in another order).
    """
    device = next(model.parameters()).device
    owner = [i for i, setting in enumerate(settings) for _ in setting.tokens]  # the setting of each row
    documents = [doc for setting in settings for doc in setting.tokens]
    sums = np.zeros((len(settings), 5))  # loss, correct, tokens, own, labelled
    vocab = [(torch.from_numpy(s.own).to(device), torch.from_numpy(s.labelled).to(device)) for s in settings]
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, device):
        owners = [owner[r] for r in batch.index]
        with switched_off(model, [settings[i].neurons for i in owners]):
            losses, predicted = next_token_predictions(model, batch.tokens)
        real = batch.mask[:, 1:].bool()
        for row, i in enumerate(owners):
            own, labelled = vocab[i]
            keep, guess = real[row], predicted[row][real[row]]
            sums[i] += [
                float(losses[row][keep].sum()),
                int((guess == batch.tokens[row, 1:][keep]).sum()),
                int(keep.sum()),
                int(own[guess].sum()),
                int(labelled[guess].sum()),
            ]
    return [
        Measures(loss / max(n, 1), correct / max(n, 1), n_own / max(n_lab, 1), int(n))
        for loss, correct, n, n_own, n_lab in sums
    ]


class MeasureMemo:
    """Measurements by key, saved after each one, so an interrupted experiment resumes.

    ``data`` holds them as saved (JSON): a [`Measures`][workbench.interventions.measures.Measures]
    as its fields, a continuation fidelity as ``{language: share}``.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, Any] = load_json(path) if path is not None and path.exists() else {}

    def put_many(self, values: Mapping[str, Measures | dict[str, float | None]]) -> None:
        """Record finished measurements, and save them once for all (under ``torchrun``, process 0 saves)."""
        for key, value in values.items():
            self.data[key] = asdict(value) if isinstance(value, Measures) else value
        path = self.path
        if path is not None:
            on_main(lambda: save_json(path, self.data))

    def __getitem__(self, key: str) -> Measures:
        return Measures(**self.data[key])


def verse_prompts(token_lists: list[Int[torch.Tensor, " pos"]], length: int) -> Int[torch.Tensor, "batch pos"]:
    """The first ``length`` tokens (BOS included) of every verse long enough, as one tensor."""
    rows = [t[:length] for t in token_lists if len(t) > length]
    if not rows:
        return torch.empty(0, length, dtype=torch.long)
    return torch.stack(rows)


def continuation_fidelity(
    model: Model,
    prompts: dict[str, Int[torch.Tensor, "batch pos"]],
    sets: dict[str, NeuronSet | None],
    vocab: dict[str, tuple[Bool[np.ndarray, " d_vocab"], Bool[np.ndarray, " d_vocab"]]],
    new_tokens: int,
) -> dict[str, float | None]:
    """Per language, the share of its greedy continuations' labelled tokens that are in the language.

    ``sets[language]`` is switched off while that language's prompts continue; every language runs
    in one batch (per-row masks). None where the continuations hold no labelled token.
    """
    return continuation_fidelities(model, prompts, [sets], vocab, new_tokens)[0]


def continuation_fidelities(
    model: Model,
    prompts: dict[str, Int[torch.Tensor, "batch pos"]],
    settings: Sequence[dict[str, NeuronSet | None]],
    vocab: dict[str, tuple[Bool[np.ndarray, " d_vocab"], Bool[np.ndarray, " d_vocab"]]],
    new_tokens: int,
) -> list[dict[str, float | None]]:
    """Continuation fidelity for several settings at once, in one batch.

    [`continuation_fidelity`][workbench.interventions.measures.continuation_fidelity] per setting
    (per language, the set switched off); every (setting, language, prompt) is a row with its own
    mask.

    Args:
        model: The model, hooked as it is now.
        prompts: Per language, equal-length verse beginnings
            ([`verse_prompts`][workbench.interventions.measures.verse_prompts]).
        settings: Per setting and language, the neurons switched off (None: none).
        vocab: Per language, its ``(own, labelled)`` vocabulary masks
            ([`in_language`][workbench.interventions.measures.in_language]).
        new_tokens: Greedy tokens generated after each prompt.

    Returns:
        Per setting, each language's continuation fidelity (None without prompts or labelled tokens).
    """
    langs = [lang for lang in prompts if len(prompts[lang])]
    if not langs:
        return [dict.fromkeys(prompts) for _ in settings]
    batch = torch.cat([prompts[lang] for _ in settings for lang in langs]).to(next(model.parameters()).device)
    row_sets = [sets[lang] for sets in settings for lang in langs for _ in range(len(prompts[lang]))]
    with switched_off(model, row_sets), torch.no_grad():
        generated = greedy(model, batch, new_tokens)[0].cpu().numpy()
    out, start = [], 0
    for _ in settings:
        fidelity: dict[str, float | None] = dict.fromkeys(prompts)
        for lang in langs:
            rows = generated[start : start + len(prompts[lang])]
            start += len(prompts[lang])
            own, labelled = vocab[lang]
            n_labelled = int(labelled[rows].sum())
            fidelity[lang] = float(own[rows].sum() / n_labelled) if n_labelled else None
        out.append(fidelity)
    return out
