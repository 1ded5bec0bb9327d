"""Steering the output language through transcoder features, on the original model.

arXiv 2511.10840 steers the language a model writes in by scaling language-identity features of
a cross-layer transcoder: single features scaled by factors from +5 to -40, clusters of a
language's features from -20 to +30. Here an [`Intervention`][workbench.clt.steering.Intervention] switches language A's
features off and language B's on at one ``strength``:

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
Since an off feature is read on the steered residual, a change at layer ``l`` feeds into the
activations read at later layers, as it would in the model.

**Control** ([`matched_control`][workbench.clt.steering.matched_control]): changing the residual stream at all, by any direction,
moves the output; a language shift is only evidence for the features if the same amount of change
along other directions does less. The control reads the same features (so it changes the same
amounts, at the same tokens) but writes each change along a random feature's decoder of the same
layer, rescaled to the read feature's decoder norm: the same count of features, the same layers
and the same norm written per token (exactly for a per-layer transcoder; for a cross-layer one in
total over the target layers).

[`greedy`][workbench.clt.steering.greedy] continues prompts greedily under hooks (one new position per step, against a
key-value cache: every change above acts on each position by itself) and
[`steer_measure`][workbench.clt.steering.steer_measure] says which language the continuation is in (token labels of
[`workbench.language.langid.VocabLanguages`][workbench.language.langid.VocabLanguages]) and how much probability goes to each language.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch

from workbench.clt.transcoder import CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.language.langid import SPECIAL_LABELS, VocabLanguages
from workbench.lens.readout import greedy as generate

Feature = tuple[int, int]  # (layer, feature index)


@dataclass(frozen=True)
class Intervention:
    """Switch off language A's features and switch on language B's, at one strength."""

    off: tuple[Feature, ...]  # read: activation a -> (1 - strength) * a   (strength 1: off; >1 reversed)
    on: tuple[Feature, ...]  # read: activation a -> a + strength * on_values[i]
    on_values: tuple[float, ...]  # each on-feature's typical activation (its mean where active on language B)
    strength: float
    off_write: tuple[Feature, ...] | None = None  # where each change is written: None = the feature itself;
    on_write: tuple[Feature, ...] | None = None  # a control writes the same change along other features' decoders
    off_gain: tuple[float, ...] | None = (
        None  # multiplies each written change (control: ||W_dec read|| / ||W_dec write||)
    )
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


# --------------------------------------------------------------------------- checks


def _check_feature(clt: CrossLayerTranscoder, feature: Feature, what: str) -> None:
    layer, index = feature
    L, F = clt.config.n_layers, clt.config.n_features
    if not 0 <= layer < L:
        raise ValueError(
            f"{what} feature {tuple(feature)}: layer {layer} out of range; the CLT has {L} layers (0..{L - 1})."
        )
    if not clt.config.covers(layer):
        raise ValueError(
            f"{what} feature {tuple(feature)}: layer {layer} has no features in this transcoder (it "
            f"covers layers {', '.join(map(str, clt.config.covered))}); that layer's MLP is left as it is."
        )
    if not 0 <= index < F:
        raise ValueError(
            f"{what} feature {tuple(feature)}: index {index} out of range; the CLT has {F} features per layer (0..{F - 1})."
        )


def check_intervention(clt: CrossLayerTranscoder, intervention: Intervention) -> None:
    """Raise ``ValueError`` unless every feature exists in ``clt``, lengths agree, no read feature is
    repeated and every change is written in the layer it is read in.
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
            _check_feature(clt, read, kind)
            _check_feature(clt, write, f"{kind}_write")
            if write[0] != read[0]:
                raise ValueError(
                    f"{kind}-feature {tuple(read)} is written along {tuple(write)}, in another layer; "
                    "a change must be written in the layer it is read in."
                )


def _check_model(model, clt: CrossLayerTranscoder) -> None:
    cfg = model.cfg
    if (cfg.n_layers, cfg.d_model) != (clt.config.n_layers, clt.config.d_model):
        raise ValueError(
            f"The CLT has {clt.config.n_layers} layers of width {clt.config.d_model}; the model "
            f"{cfg.n_layers} of width {cfg.d_model}."
        )


# --------------------------------------------------------------------------- directions


@torch.no_grad()
def write_vectors(
    clt: CrossLayerTranscoder, writes: Sequence[Feature], gains: Sequence[float] | None = None
) -> torch.Tensor:
    """``[n, L, d]``: what a unit change written along each feature of ``writes`` adds at every
    layer's MLP output, ``gain * W_dec[l][t - l][f] / out_scale[t]`` (zero before ``l`` and past
    the feature's decoders).
    """
    L, d = clt.config.n_layers, clt.config.d_model
    out = torch.zeros(len(writes), L, d, dtype=clt.b_dec.dtype, device=clt.b_dec.device)
    gain = torch.tensor(list(gains) if gains is not None else [1.0] * len(writes), dtype=out.dtype, device=out.device)
    for layer in sorted({w[0] for w in writes}):
        rows = [i for i, w in enumerate(writes) if w[0] == layer]
        index = torch.tensor([writes[i][1] for i in rows], device=out.device)
        K = clt.config.targets(layer)
        dec = clt.W_dec[layer][:, index, :] / clt.out_scale[layer : layer + K, None, None]  # [K, n, d]
        out[rows, layer : layer + K] = dec.transpose(0, 1) * gain[rows, None, None]
    return out


@dataclass
class _OffLayer:
    """The off-features read at one layer: their encoder columns and what a unit change writes."""

    layer: int
    W_enc: torch.Tensor  # [d, n]
    b_enc: torch.Tensor  # [n]
    threshold: torch.Tensor  # [n]
    vectors: torch.Tensor  # [n, L, d]

    def activations(self, x: torch.Tensor, in_scale: torch.Tensor) -> torch.Tensor:
        """Only these features' JumpReLU activations ``[..., n]`` from the MLP input ``x``."""
        pre = (x.to(self.W_enc) * in_scale) @ self.W_enc + self.b_enc  # the transcoder's dtype and device
        return pre * (pre > self.threshold)


@torch.no_grad()
def _off_layers(clt: CrossLayerTranscoder, iv: Intervention) -> dict[int, _OffLayer]:
    writes, gains = iv.writes("off"), iv.gains("off")
    layers = {}
    for layer in sorted({f[0] for f in iv.off}):
        rows = [i for i, f in enumerate(iv.off) if f[0] == layer]
        index = torch.tensor([iv.off[i][1] for i in rows], device=clt.W_enc.device)
        layers[layer] = _OffLayer(
            layer,
            clt.W_enc[layer][:, index].detach(),
            clt.b_enc[layer, index].detach(),
            clt.threshold[layer, index].detach(),
            write_vectors(clt, [writes[i] for i in rows], [gains[i] for i in rows]),
        )
    return layers


@torch.no_grad()
def _on_vectors(clt: CrossLayerTranscoder, iv: Intervention) -> torch.Tensor:
    """``[L, d]``: the constant the on-features add at every layer's MLP output."""
    vectors = write_vectors(clt, iv.writes("on"), iv.gains("on"))
    values = torch.tensor(iv.on_values, dtype=vectors.dtype, device=vectors.device)
    return iv.strength * torch.einsum("n,nld->ld", values, vectors)


# --------------------------------------------------------------------------- hooks


@dataclass
class _Plan:
    """One intervention made ready for the hooks: its off-features per layer and the constant its
    on-features add at every layer (None: no on-features).
    """

    strength: float
    off: dict[int, _OffLayer]
    on: torch.Tensor | None  # [L, d]
    targets: frozenset[int]  # the layers whose MLP output it changes

    @classmethod
    def of(cls, clt: CrossLayerTranscoder, iv: Intervention) -> _Plan | None:
        """None where the intervention changes nothing (strength 0, or no features)."""
        if iv.strength == 0 or not (iv.off or iv.on):
            return None
        off, on = _off_layers(clt, iv), _on_vectors(clt, iv) if iv.on else None
        targets = {t for t in range(clt.config.n_layers) if any(clt.config.writes(layer, t) for layer in off)}
        if on is not None:
            targets |= {t for t in range(clt.config.n_layers) if on[t].any()}
        return cls(iv.strength, off, on, frozenset(targets))


def _block(rows: int, blocks: int) -> int:
    if rows % blocks:
        raise ValueError(f"A batch of {rows} rows cannot be split into {blocks} equal blocks, one per intervention.")
    return rows // blocks


@contextmanager
def steering(
    model, clt: CrossLayerTranscoder, intervention: Intervention | Sequence[Intervention], start: int = 0
) -> Iterator:
    """The original model with ``intervention``'s changes added along decoder directions (hooks,
    removed on exit, also on errors). ``start``: steer only positions ``>= start`` (also the
    generated ones). Strength 0 adds no hooks at all.

    With a sequence of interventions, a batch's rows are split into as many equal blocks and block
    ``k`` is steered by the ``k``-th: a sweep runs as one batch (tested equal to one run each).
    """
    interventions = [intervention] if isinstance(intervention, Intervention) else list(intervention)
    for iv in interventions:
        check_intervention(clt, iv)
    _check_model(model, clt)
    plans = [_Plan.of(clt, iv) for iv in interventions]
    if all(plan is None for plan in plans):
        yield model
        return
    in_scale = clt.in_scale.detach()
    changes: dict[tuple[int, int], torch.Tensor] = {}  # (block, layer) -> [n, pos, features read]

    def kept(change: torch.Tensor) -> torch.Tensor:
        return change * (torch.arange(change.shape[-2], device=change.device) >= start)[:, None] if start else change

    def read(layer: int):
        def hook(x, hook):
            n = _block(x.shape[0], len(plans))
            for k, plan in enumerate(plans):
                if plan is not None and layer in plan.off:
                    a = plan.off[layer].activations(x[k * n : (k + 1) * n], in_scale[layer])
                    changes[k, layer] = kept(-plan.strength * a)

        return hook

    def delta(k: int, plan: _Plan, target: int, like: torch.Tensor) -> torch.Tensor:
        """What block ``k`` adds at ``target``'s MLP output."""
        total = torch.zeros((), dtype=clt.b_dec.dtype, device=clt.b_dec.device)
        for layer, off in plan.off.items():
            if clt.config.writes(layer, target):
                total = total + changes[k, layer] @ off.vectors[:, target, :]
        if plan.on is not None and plan.on[target].any():
            constant = plan.on[target].expand(like.shape[-2], -1)
            total = total + kept(constant)
        return total

    def write(target: int):
        def hook(out, hook):
            n = _block(out.shape[0], len(plans))
            blocks = [
                out[k * n : (k + 1) * n]
                if plan is None or target not in plan.targets
                else out[k * n : (k + 1) * n] + delta(k, plan, target, out).to(out)
                for k, plan in enumerate(plans)
            ]
            return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

        return hook

    L = clt.config.n_layers
    read_layers = sorted({layer for plan in plans if plan is not None for layer in plan.off})
    hooks = [(mlp_in_hook(layer), read(layer)) for layer in read_layers]
    hooks += [(mlp_out_hook(t), write(t)) for t in range(L) if any(p is not None and t in p.targets for p in plans)]
    try:
        with model.hooks(fwd_hooks=hooks):
            yield model
    finally:
        changes.clear()


# --------------------------------------------------------------------------- control


@torch.no_grad()
def matched_control(
    clt: CrossLayerTranscoder,
    intervention: Intervention,
    seed: int,
    exclude: set[Feature] | frozenset[Feature] = frozenset(),
) -> Intervention:
    """The count- and magnitude-matched random control of ``intervention``: the same read
    features and strength, each change written along a random feature of the read feature's layer
    (seeded; never one of ``exclude`` or of the intervention's own features; no feature twice), its
    gain set so that the written change has the norm the intervention writes:
    ``gain * ||W_dec(read's write)|| / ||W_dec(new write)||`` (norms over all target decoders).
    The norms match in the transcoder's scaled units (before the division by ``out_scale``): per
    target for a per-layer CLT, over all targets together for a cross-layer one.
    """
    check_intervention(clt, intervention)
    iv = intervention
    reads = list(iv.off) + list(iv.on)
    old_writes = list(iv.writes("off")) + list(iv.writes("on"))
    old_gains = list(iv.gains("off")) + list(iv.gains("on"))
    banned = {tuple(f) for f in exclude} | {tuple(f) for f in reads} | {tuple(f) for f in old_writes}
    generator = torch.Generator().manual_seed(seed)
    F = clt.config.n_features
    new_writes: list[Feature | None] = [None] * len(reads)
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


@torch.no_grad()
def greedy(
    model,
    tokens: torch.Tensor,
    new_tokens: int,
    context: Callable[[], AbstractContextManager] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Greedy continuation of ``tokens [n, p]`` (same length, no padding) inside ``context()``
    (e.g. ``lambda: steering(model, clt, iv)``): [`workbench.lens.readout.greedy`][workbench.lens.readout.greedy], each step
    one new position against a key-value cache (``cache=False``: the whole growing sequence).

    Returns the generated ids ``[n, new_tokens]`` and, if ``reduce`` is given, ``reduce(probs)``
    of each step's next-token distribution ``probs [n, d_vocab]`` stacked to ``[n, new_tokens, ...]``.
    """
    with (context or nullcontext)():
        return generate(model, tokens.to(model.cfg.device), new_tokens, reduce, cache)


@dataclass
class SteerMeasure:
    """Which language a (steered) greedy continuation is in."""

    share_b: float  # of the generated tokens with a language label, the share labelled B (nan if none)
    share_a: float  # ... labelled A
    mass_b: float  # probability on tokens labelled B, mean over steps and prompts
    mass_a: float
    labelled: int  # generated tokens with a language label
    tokens: int  # generated tokens in all
    changed: float | None = None  # share of generated tokens unlike the baseline continuation's


def language_masks(vocab: VocabLanguages, d_vocab: int, lang_a: str, lang_b: str) -> torch.Tensor:
    """``[d_vocab, 2]`` float: tokens labelled A, tokens labelled B."""
    if len(vocab.labels) != d_vocab:
        raise ValueError(f"The vocabulary labels cover {len(vocab.labels)} tokens; the model has {d_vocab}.")
    for lang in (lang_a, lang_b):
        if lang not in vocab.languages:
            raise ValueError(f"{lang!r} is not a language of the labels ({vocab.languages}).")
    return torch.stack([torch.from_numpy(vocab.is_label(lang_a)), torch.from_numpy(vocab.is_label(lang_b))], -1).float()


@torch.no_grad()
def steer_measure(
    model,
    clt: CrossLayerTranscoder,
    prompts: torch.Tensor,
    intervention: Intervention,
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    new_tokens: int,
    baseline: torch.Tensor | None = None,
    batch_size: int = 16,
    start: int = 0,
) -> SteerMeasure:
    """Greedy continuations of ``prompts [n, p]`` under ``intervention`` and their language:
    token shares among language-labelled tokens, probability mass per step, and (given the
    unsteered continuation ``baseline [n, new_tokens]``) the share of tokens that changed.
    """
    return steer_measures(
        model, clt, prompts, [intervention], vocab, lang_a, lang_b, new_tokens, baseline, batch_size, start
    )[0]


@torch.no_grad()
def steer_measures(
    model,
    clt: CrossLayerTranscoder,
    prompts: torch.Tensor,
    interventions: Sequence[Intervention],
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    new_tokens: int,
    baseline: torch.Tensor | None = None,
    batch_size: int = 16,
    start: int = 0,
) -> list[SteerMeasure]:
    """[`steer_measure`][workbench.clt.steering.steer_measure] of each intervention, all in the same batches: ``batch_size`` prompts
    at a time, repeated once per intervention (one row block each, [`steering`][workbench.clt.steering.steering]). A step's
    cost on a large vocabulary is mostly reading the unembedding, whatever the rows, so a sweep
    in one batch costs little more than one of its interventions.
    """
    masks = language_masks(vocab, model.cfg.d_vocab, lang_a, lang_b).to(model.cfg.device)
    K = len(interventions)
    generated, masses = [], []
    for chunk in prompts.split(batch_size):  # steering from a position counts whole sequences: no cache then
        ids, mass = greedy(
            model,
            chunk.repeat(K, 1),
            new_tokens,
            lambda: steering(model, clt, interventions, start),
            lambda probs: probs.to(masks) @ masks,
            cache=start == 0,
        )
        generated.append(ids.cpu().unflatten(0, (K, len(chunk))))
        masses.append(
            mass.cpu().unflatten(0, (K, len(chunk))) if mass is not None else torch.zeros(K, len(chunk), 0, 2)
        )
    ids, mass = torch.cat(generated, 1), torch.cat(masses, 1)
    return [_measure(ids[k], mass[k], vocab, lang_a, lang_b, baseline) for k in range(K)]


def _measure(
    ids: torch.Tensor,
    mass: torch.Tensor,
    vocab: VocabLanguages,
    lang_a: str,
    lang_b: str,
    baseline: torch.Tensor | None,
) -> SteerMeasure:
    """The language of continuations ``ids [n, new]`` with their per-step masses ``[n, new, 2]``."""
    labels = torch.from_numpy(vocab.labels.astype("int64"))[ids]
    labelled = labels >= len(SPECIAL_LABELS)
    count = int(labelled.sum())

    def share(lang: str) -> float:
        return int((labels == vocab.names.index(lang)).sum()) / count if count else math.nan

    changed = None
    if baseline is not None:
        if baseline.shape != ids.shape:
            raise ValueError(f"The baseline has shape {tuple(baseline.shape)}; the continuations {tuple(ids.shape)}.")
        changed = float((baseline.cpu() != ids).float().mean()) if ids.numel() else math.nan
    mean = mass.mean(dim=(0, 1)) if mass.numel() else torch.full((2,), math.nan)
    return SteerMeasure(share(lang_b), share(lang_a), float(mean[1]), float(mean[0]), count, int(ids.numel()), changed)


__all__ = [
    "Feature",
    "Intervention",
    "SteerMeasure",
    "check_intervention",
    "greedy",
    "language_masks",
    "matched_control",
    "steer_measure",
    "steer_measures",
    "steering",
    "write_vectors",
]
