"""Measuring a model as it is hooked now, shared by deactivation, fine-tuning and tasks.

Per language ([`Measures`][workbench.interventions.measures.Measures]): next-token loss (nats/token), next-token accuracy, and the
*fidelity* of the model's top-1 predictions (teacher-forced: the share of predicted tokens in
the input language among predictions that carry a language label), and optionally the fidelity
of greedy continuations of verse beginnings. Also: count-matched random neuron sets (the
controls), and [`MeasureMemo`][workbench.interventions.measures.MeasureMemo], measurements saved as they finish so an interrupted
experiment resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.data.batching import DEFAULT_BATCH_TOKENS, iter_batches, pad_id_of
from workbench.lens.layer_language import ENGLISH, INPUT, OTHER
from workbench.lens.readout import greedy, next_token_predictions
from workbench.neurons.masking import switched_off
from workbench.neurons.sets import NeuronSet, structure_size
from workbench.runs.distributed import on_main
from workbench.runs.results import load_json, save_json


def random_like(neurons: NeuronSet, dims, seed: int) -> NeuronSet:
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


@dataclass
class Measures:
    """One language under one setting, over its held-out verses."""

    loss: float
    accuracy: float
    fidelity: float  # share of language-labelled top-1 predictions in the input language
    n_tokens: int
    continuation_fidelity: float | None = None

    def delta(self, baseline: Measures) -> dict[str, float | None]:
        """Damage relative to ``baseline``: loss up, accuracy and fidelities down (positive = worse)."""
        out = {
            "loss": self.loss - baseline.loss,
            "accuracy": baseline.accuracy - self.accuracy,
            "fidelity": baseline.fidelity - self.fidelity,
        }
        if self.continuation_fidelity is not None and baseline.continuation_fidelity is not None:
            out["continuation_fidelity"] = baseline.continuation_fidelity - self.continuation_fidelity
        else:
            out["continuation_fidelity"] = None
        return out


def in_language(categories: np.ndarray, language: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean vocabulary masks: tokens of ``language``, and tokens that carry any language label
    (English, the input language, another language), from [`token_categories`][workbench.lens.layer_language.token_categories].
    """
    own = categories == (ENGLISH if language == "en" else INPUT)
    labelled = np.isin(categories, (ENGLISH, INPUT, OTHER))
    return own, labelled


@torch.no_grad()
def measure(
    model,
    tokens: Sequence[torch.Tensor],
    own: np.ndarray,
    labelled: np.ndarray,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> Measures:
    """Loss, accuracy and top-1 fidelity of the model (as it is hooked now) over ``tokens``."""
    return measure_many(model, [Setting(tokens, own, labelled)], batch_tokens)[0]


@dataclass
class Setting:
    """One measurement of [`measure_many`][workbench.interventions.measures.measure_many]: a language's documents and vocabulary masks, and
    the neurons switched off while measuring them (None: none).
    """

    tokens: Sequence[torch.Tensor]
    own: np.ndarray
    labelled: np.ndarray
    neurons: NeuronSet | None = None


@torch.no_grad()
def measure_many(model, settings: Sequence[Setting], batch_tokens: int = DEFAULT_BATCH_TOKENS) -> list[Measures]:
    """[`measure`][workbench.interventions.measures.measure] for many settings in shared forward passes: every (setting, document) is a
    batch row with its own mask ([`switched_off`][workbench.neurons.masking.switched_off] with per-row sets), so
    small measurements fill whole batches. Equal to measuring one setting at a time (the same
    sums, added in another order).
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


@torch.no_grad()
def greedy_continuations(model, prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    """``[b, n_new]`` greedy continuations of equal-length ``prompts [b, P]`` (with the hooks
    that are active), reading out only the last position of each step, with a key-value cache.
    """
    return greedy(model, prompts, n_new)[0]


class MeasureMemo:
    """Measurements by key, saved after each one, so an interrupted experiment resumes."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data = load_json(path) if path is not None and path.exists() else {}

    def get(self, key: str, compute):
        if key not in self.data:
            self.put_many({key: compute()})
        return self[key]

    def put_many(self, values: dict) -> None:
        """Record finished measurements (and save them, once for all; under ``torchrun`` process 0
        saves).
        """
        for key, value in values.items():
            self.data[key] = asdict(value) if isinstance(value, Measures) else value
        if self.path is not None:
            on_main(lambda: save_json(self.path, self.data))

    def __getitem__(self, key: str):
        value = self.data[key]
        return Measures(**value) if isinstance(value, dict) and "loss" in value else value


def verse_prompts(token_lists: list[torch.Tensor], length: int) -> torch.Tensor:
    """The first ``length`` tokens (BOS included) of every verse long enough, as one tensor."""
    rows = [t[:length] for t in token_lists if len(t) > length]
    if not rows:
        return torch.empty(0, length, dtype=torch.long)
    return torch.stack(rows)


def continuation_fidelity(
    model,
    prompts: dict[str, torch.Tensor],
    sets: dict[str, NeuronSet | None],
    vocab: dict[str, tuple[np.ndarray, np.ndarray]],
    new_tokens: int,
) -> dict[str, float | None]:
    """Per language, the share of its greedy continuations' language-labelled tokens that are in
    the language, with ``sets[language]`` switched off; every language in one batch (per-row masks).
    """
    return continuation_fidelities(model, prompts, [sets], vocab, new_tokens)[0]


def continuation_fidelities(
    model,
    prompts: dict[str, torch.Tensor],
    settings: Sequence[dict[str, NeuronSet | None]],
    vocab: dict[str, tuple[np.ndarray, np.ndarray]],
    new_tokens: int,
) -> list[dict[str, float | None]]:
    """[`continuation_fidelity`][workbench.interventions.measures.continuation_fidelity] for several settings (per language, the set switched off) in
    one batch: every (setting, language, prompt) is a row with its own mask.
    """
    langs = [lang for lang in prompts if len(prompts[lang])]
    if not langs:
        return [dict.fromkeys(prompts) for _ in settings]
    batch = torch.cat([prompts[lang] for _ in settings for lang in langs]).to(next(model.parameters()).device)
    row_sets = [sets[lang] for sets in settings for lang in langs for _ in range(len(prompts[lang]))]
    with switched_off(model, row_sets):
        generated = greedy_continuations(model, batch, new_tokens).cpu().numpy()
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
