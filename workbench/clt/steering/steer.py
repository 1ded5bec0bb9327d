"""Steering the output language through transcoder features, on the original model.

arXiv 2511.10840 steers the language a model writes in by scaling language-identity features of
a cross-layer transcoder: single features scaled by factors from +5 to -40, clusters of a
language's features from -20 to +30. Here an [`Intervention`][workbench.clt.steering.steer.Intervention]
switches language A's features off and language B's on at one ``strength``:

* an **off** feature read at layer ``l`` changes by ``-strength * a``, where ``a`` is its
  activation on the (steered) MLP input ``blocks.{l}.ln2.hook_normalized``: strength 1 switches it
  off, more than 1 reverses it;
* an **on** feature changes by ``+strength * value`` at every position, ``value`` being its typical
  activation (its mean where active on language B).

The change is not applied inside a replacement model: the MLPs run as usual, and each change is
*added* along the feature's decoders, ``gain * change * W_dec[l][t - l][f] / out_scale[t]`` at
``blocks.{t}.hook_mlp_out`` for every layer ``t >= l`` the feature writes to (its own layer only
for a per-layer transcoder). So the model moves by exactly what the transcoder says the feature
contributes, and everything the features do not explain (the reconstruction error) is left intact.
A skip transcoder's skip is no feature and is not steered: the MLPs run, so what the skip stands
for (a linear map of each MLP input) is the model's own response to the steered residual.
Since an off feature is read on the steered residual, a change at layer ``l`` feeds into the
activations read at later layers, as it would in the model. What is added where is planned in
[`workbench.clt.steering.plan`][workbench.clt.steering.plan].

**Control** ([`matched_control`][workbench.clt.steering.steer.matched_control]): changing the residual
stream at all, by any direction, moves the output; a language shift is only evidence for the
features if the same amount of change along other directions does less. The control reads the
same features (so it changes the same amounts, at the same tokens) but writes each change along a
random feature's decoder of the same layer, rescaled to the read feature's decoder norm: the same
count of features, the same layers and the same norm written per token (exactly for a per-layer
transcoder; for a cross-layer one in total over the target layers).

[`steer_measure`][workbench.clt.steering.steer.steer_measure] continues prompts greedily under the hooks
([`workbench.lens.readout.greedy`][workbench.lens.readout.greedy]: one new position per step,
against a key-value cache, since every change above acts on each position by itself) and says
which language the continuation is in (token labels of
[`VocabLanguages`][workbench.language.vocabulary.VocabLanguages]) and how much probability goes to
each language.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int

from workbench.clt.steering.plan import (
    Feature,
    Plan,
    SteeringHooks,
    check_feature,
    check_model,
    off_layers,
    on_vectors,
)
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.language.classifier import SPECIAL_LABELS
from workbench.language.vocabulary import VocabLanguages
from workbench.lens.readout import greedy

if TYPE_CHECKING:
    from workbench.models.model import Model


@dataclass(frozen=True)
class Intervention:
    """Switch off language A's features and switch on language B's, at one strength.

    Attributes:
        off: Features whose activation ``a`` becomes ``(1 - strength) * a`` (strength 1: off; more:
            reversed).
        on: Features whose activation ``a`` becomes ``a + strength * on_values[i]``.
        on_values: Each on-feature's typical activation (its mean where active on language B).
        strength: How far to steer (0: not at all).
        off_write: Where each off-change is written (None: along the feature itself); a control
            writes the same change along other features' decoders.
        on_write: Likewise for the on-features.
        off_gain: Multiplies each written off-change (control: ``||W_dec read|| / ||W_dec write||``;
            None: ones).
        on_gain: Likewise for the on-features.
    """

    off: tuple[Feature, ...]
    on: tuple[Feature, ...]
    on_values: tuple[float, ...]
    strength: float
    off_write: tuple[Feature, ...] | None = None
    on_write: tuple[Feature, ...] | None = None
    off_gain: tuple[float, ...] | None = None
    on_gain: tuple[float, ...] | None = None

    def with_strength(self, strength: float) -> Intervention:
        """The same intervention at another strength."""
        return replace(self, strength=float(strength))

    def writes(self, kind: str) -> tuple[Feature, ...]:
        """The write features of ``"off"`` or ``"on"`` (the read features where not given)."""
        reads, writes = (self.off, self.off_write) if kind == "off" else (self.on, self.on_write)
        return tuple(reads) if writes is None else tuple(writes)

    def gains(self, kind: str) -> tuple[float, ...]:
        """The gains of ``"off"`` or ``"on"`` (ones where not given)."""
        reads, gains = (self.off, self.off_gain) if kind == "off" else (self.on, self.on_gain)
        return (1.0,) * len(reads) if gains is None else tuple(float(g) for g in gains)


def check_intervention(clt: CrossLayerTranscoder, intervention: Intervention) -> None:
    """Refuse an intervention that ``clt`` cannot carry out.

    Raises:
        ValueError: A feature that does not exist in ``clt``, lengths that disagree, a read feature
            repeated, or a change written in another layer than it is read in.
    """
    iv = intervention
    if len(iv.on_values) != len(iv.on):
        raise ValueError(f"{len(iv.on)} on-features but {len(iv.on_values)} on_values.")
    for kind, reads, writes, gains in (
        ("off", iv.off, iv.off_write, iv.off_gain),
        ("on", iv.on, iv.on_write, iv.on_gain),
    ):
        for name, values in ((f"{kind}_write", writes), (f"{kind}_gain", gains)):
            if values is not None and len(values) != len(reads):
                raise ValueError(f"{len(reads)} {kind}-features but {len(values)} entries in {name}.")
        if len(set(map(tuple, reads))) != len(reads):
            raise ValueError(f"A {kind}-feature is repeated: {list(reads)}.")
        for read, write in zip(reads, iv.writes(kind)):
            check_feature(clt, read, kind)
            check_feature(clt, write, f"{kind}_write")
            if write[0] != read[0]:
                raise ValueError(
                    f"{kind}-feature {tuple(read)} is written along {tuple(write)}, in another layer; "
                    "a change must be written in the layer it is read in."
                )


def _plan(clt: CrossLayerTranscoder, iv: Intervention) -> Plan | None:
    """``iv`` made ready for the hooks; None where it changes nothing (strength 0, or no features)."""
    if iv.strength == 0 or not (iv.off or iv.on):
        return None
    off = off_layers(clt, iv.off, iv.writes("off"), iv.gains("off"))
    on = on_vectors(clt, iv.writes("on"), iv.gains("on"), iv.on_values, iv.strength) if iv.on else None
    return Plan.of(clt, iv.strength, off, on)


@contextmanager
def steering(
    model: Model, clt: CrossLayerTranscoder, intervention: Intervention | Sequence[Intervention], start: int = 0
) -> Iterator[Model]:
    """The original model with ``intervention``'s changes added along decoder directions.

    Hooks, removed on exit, also on errors; strength 0 adds no hooks at all. With a sequence of
    interventions, a batch's rows are split into as many equal blocks and block ``k`` is steered by
    the ``k``-th: a sweep runs as one batch (tested equal to one run each).

    Args:
        model: The hooked model (of the transcoder's shape).
        clt: The transcoder.
        intervention: One intervention, or one per block of rows.
        start: Steer only positions ``>= start`` (also the generated ones).

    Raises:
        ValueError: An intervention the transcoder cannot carry out, or a model of another shape.
    """
    interventions = [intervention] if isinstance(intervention, Intervention) else list(intervention)
    for iv in interventions:
        check_intervention(clt, iv)
    check_model(model, clt)
    plans = [_plan(clt, iv) for iv in interventions]
    if all(plan is None for plan in plans):
        yield model
        return
    hooks = SteeringHooks(clt, plans, start)
    try:
        with model.hooks(fwd_hooks=list(hooks.hooks())):  # a fresh list: TransformerLens types it wider
            yield model
    finally:
        hooks.changes.clear()


# --------------------------------------------------------------------------- control


@torch.no_grad()
def matched_control(
    clt: CrossLayerTranscoder,
    intervention: Intervention,
    seed: int,
    exclude: set[Feature] | frozenset[Feature] = frozenset(),
) -> Intervention:
    """The count- and magnitude-matched random control of ``intervention``.

    The same read features and strength, each change written along a random feature of the read
    feature's layer, its gain set so that the written change has the norm the intervention writes:
    ``gain * ||W_dec(read's write)|| / ||W_dec(new write)||`` (norms over all target decoders).
    The norms match in the transcoder's scaled units (before the division by ``out_scale``): per
    target for a per-layer CLT, over all targets together for a cross-layer one.

    Args:
        clt: The transcoder.
        intervention: The intervention to match.
        seed: Seeds the choice of write features.
        exclude: Features never chosen (nor are the intervention's own, nor any feature twice).

    Raises:
        ValueError: A layer without enough features left to choose from.
    """
    check_intervention(clt, intervention)
    iv = intervention
    reads = list(iv.off) + list(iv.on)
    old_writes = list(iv.writes("off")) + list(iv.writes("on"))
    old_gains = list(iv.gains("off")) + list(iv.gains("on"))
    banned = {tuple(f) for f in exclude} | {tuple(f) for f in reads} | {tuple(f) for f in old_writes}
    generator = torch.Generator().manual_seed(seed)
    F = clt.config.n_features
    new_writes: list[Feature] = [(-1, -1)] * len(reads)  # every read gets one below
    for layer in sorted({f[0] for f in reads}):
        rows = [i for i, f in enumerate(reads) if f[0] == layer]
        free = [f for f in range(F) if (layer, f) not in banned]
        if len(free) < len(rows):
            raise ValueError(
                f"Layer {layer}: {len(rows)} control features needed but only {len(free)} are not excluded."
            )
        order = torch.randperm(len(free), generator=generator)[: len(rows)].tolist()
        for i, j in zip(rows, order):
            new_writes[i] = (layer, free[j])
    norms = clt.decoder_norms()
    gains = [g * float(norms[o] / norms[n]) for g, o, n in zip(old_gains, old_writes, new_writes)]
    n_off = len(iv.off)
    return Intervention(
        off=tuple(iv.off),
        on=tuple(iv.on),
        on_values=tuple(iv.on_values),
        strength=iv.strength,
        off_write=tuple(new_writes[:n_off]),
        on_write=tuple(new_writes[n_off:]),
        off_gain=tuple(gains[:n_off]),
        on_gain=tuple(gains[n_off:]),
    )


# --------------------------------------------------------------------------- generation and measures


@dataclass
class SteerMeasure:
    """Which language a (steered) greedy continuation is in.

    Attributes:
        share_b: Of the generated tokens with a language label, the share labelled B (nan if none).
        share_a: Likewise, labelled A.
        mass_b: Probability on tokens labelled B, mean over steps and prompts.
        mass_a: Likewise, on tokens labelled A.
        labelled: Generated tokens with a language label.
        tokens: Generated tokens in all.
        changed: Share of generated tokens unlike the baseline continuation's (None: no baseline).
    """

    share_b: float
    share_a: float
    mass_b: float
    mass_a: float
    labelled: int
    tokens: int
    changed: float | None = None


def language_masks(vocab: VocabLanguages, d_vocab: int, lang_a: str, lang_b: str) -> Float[torch.Tensor, "d_vocab 2"]:
    """The tokens labelled A (column 0) and B (column 1), as floats.

    Raises:
        ValueError: Labels of another vocabulary, or a language they do not know.
    """
    if len(vocab.labels) != d_vocab:
        raise ValueError(f"The vocabulary labels cover {len(vocab.labels)} tokens; the model has {d_vocab}.")
    for lang in (lang_a, lang_b):
        if lang not in vocab.languages:
            raise ValueError(f"{lang!r} is not a language of the labels ({vocab.languages}).")
    return torch.stack([torch.from_numpy(vocab.is_label(lang_a)), torch.from_numpy(vocab.is_label(lang_b))], -1).float()


@torch.no_grad()
def steer_measure(
    model: Model,
    clt: CrossLayerTranscoder,
    prompts: Int[torch.Tensor, "batch pos"],
    intervention: Intervention,
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    new_tokens: int,
    baseline: Int[torch.Tensor, "batch new"] | None = None,
    batch_size: int = 16,
    start: int = 0,
) -> SteerMeasure:
    """Greedy continuations of ``prompts`` under ``intervention``, and their language.

    Token shares among language-labelled tokens, probability mass per step, and (given the
    unsteered continuation ``baseline``) the share of tokens that changed.

    Args:
        model: The hooked model.
        clt: The transcoder.
        prompts: Equal-length prompts (no padding).
        intervention: What to steer.
        vocab: Every vocabulary token's language label.
        lang_a: The language steered away from.
        lang_b: The language steered towards.
        new_tokens: How many tokens to generate.
        baseline: The unsteered continuations, ``new_tokens`` each.
        batch_size: Prompts per batch.
        start: Steer only positions ``>= start`` (the continuation then reruns whole sequences).
    """
    return steer_measures(
        model, clt, prompts, [intervention], vocab, lang_a, lang_b, new_tokens, baseline, batch_size, start
    )[0]


@torch.no_grad()
def steer_measures(
    model: Model,
    clt: CrossLayerTranscoder,
    prompts: Int[torch.Tensor, "batch pos"],
    interventions: Sequence[Intervention],
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    new_tokens: int,
    baseline: Int[torch.Tensor, "batch new"] | None = None,
    batch_size: int = 16,
    start: int = 0,
) -> list[SteerMeasure]:
    """[`steer_measure`][workbench.clt.steering.steer.steer_measure] of each intervention, all in the same batches.

    ``batch_size`` prompts at a time, repeated once per intervention (one row block each,
    [`steering`][workbench.clt.steering.steer.steering]). A step's cost on a large vocabulary is mostly
    reading the unembedding, whatever the rows, so a sweep in one batch costs little more than one
    of its interventions. The arguments are [`steer_measure`][workbench.clt.steering.steer.steer_measure]'s.
    """
    masks = language_masks(vocab, model.cfg.d_vocab, lang_a, lang_b).to(model.cfg.device)
    K = len(interventions)
    generated, masses = [], []
    for chunk in prompts.split(batch_size):  # steering from a position counts whole sequences: no cache then
        with steering(model, clt, interventions, start):
            rows = chunk.repeat(K, 1).to(model.cfg.device)
            ids, mass = greedy(model, rows, new_tokens, lambda probs: probs.to(masks) @ masks, cache=start == 0)
        generated.append(ids.cpu().unflatten(0, (K, len(chunk))))
        masses.append(
            mass.cpu().unflatten(0, (K, len(chunk))) if mass is not None else torch.zeros(K, len(chunk), 0, 2)
        )
    ids, mass = torch.cat(generated, 1), torch.cat(masses, 1)
    return [_measure(ids[k], mass[k], vocab, lang_a, lang_b, baseline) for k in range(K)]


def _measure(
    ids: Int[torch.Tensor, "batch new"],
    mass: Float[torch.Tensor, "batch new 2"],
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    baseline: torch.Tensor | None,
) -> SteerMeasure:
    """The language of continuations ``ids`` with their per-step masses (A, B)."""
    labels = torch.from_numpy(vocab.labels.astype("int64"))[ids]
    labelled = labels >= len(SPECIAL_LABELS)
    count = int(labelled.sum())

    def share(lang: str) -> float:
        """The share of labelled tokens labelled ``lang``."""
        return int((labels == vocab.names.index(lang)).sum()) / count if count else math.nan

    changed = None
    if baseline is not None:
        if baseline.shape != ids.shape:
            raise ValueError(f"The baseline has shape {tuple(baseline.shape)}; the continuations {tuple(ids.shape)}.")
        changed = float((baseline.cpu() != ids).float().mean()) if ids.numel() else math.nan
    mean = mass.mean(dim=(0, 1)) if mass.numel() else torch.full((2,), math.nan)
    return SteerMeasure(share(lang_b), share(lang_a), float(mean[1]), float(mean[0]), count, int(ids.numel()), changed)


__all__ = [
    "Intervention",
    "SteerMeasure",
    "check_intervention",
    "language_masks",
    "matched_control",
    "steer_measure",
    "steer_measures",
    "steering",
]
