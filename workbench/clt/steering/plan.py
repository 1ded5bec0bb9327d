"""What a steering intervention adds where, made ready for [`steering`][workbench.clt.steering.steer.steering]'s hooks.

An [`Intervention`][workbench.clt.steering.steer.Intervention]'s features are checked against the
transcoder ([`check_feature`][workbench.clt.steering.plan.check_feature]), their writes turned into
vectors at every layer's MLP output ([`write_vectors`][workbench.clt.steering.plan.write_vectors]),
and then into a [`Plan`][workbench.clt.steering.plan.Plan]: the off-features read at each layer
([`off_layers`][workbench.clt.steering.plan.off_layers]) and the constant the on-features add
([`on_vectors`][workbench.clt.steering.plan.on_vectors]).
[`SteeringHooks`][workbench.clt.steering.plan.SteeringHooks] are the hooks that carry out one plan
per block of a batch's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float

from workbench.clt.transcoder import CrossLayerTranscoder, mlp_in_hook, mlp_out_hook

if TYPE_CHECKING:
    from workbench.models.model import Model

Feature = tuple[int, int]
"""A transcoder feature: ``(layer, feature index)``."""
Hook = Callable[..., torch.Tensor | None]
"""A TransformerLens forward hook: ``hook(value, hook=point)``, returning the new value or None."""


# --------------------------------------------------------------------------- checks


def check_feature(clt: CrossLayerTranscoder, feature: Feature, what: str) -> None:
    """Refuse a feature outside the transcoder or at a layer without features (``ValueError``).

    ``what`` names its role in the message (``off``, ``on_write``, ...).
    """
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
            f"{what} feature {tuple(feature)}: index {index} out of range; the CLT has {F} features per layer "
            f"(0..{F - 1})."
        )


def check_model(model: Model, clt: CrossLayerTranscoder) -> None:
    """Refuse a model of another shape than the transcoder's (``ValueError``)."""
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
) -> Float[torch.Tensor, "write layer d_model"]:
    """What a unit change written along each feature of ``writes`` adds at every layer's MLP output.

    ``gain * W_dec[l][t - l][f] / out_scale[t]`` at layer ``t``; zero before ``l`` and past the
    feature's decoders.

    Args:
        clt: The transcoder.
        writes: ``(layer, feature)`` pairs.
        gains: One multiplier per write (default: ones).
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
class OffLayer:
    """The off-features read at one layer: their encoder columns and what a unit change writes."""

    layer: int
    W_enc: torch.Tensor  # [d, n]
    b_enc: torch.Tensor  # [n]
    threshold: torch.Tensor  # [n]
    vectors: torch.Tensor  # [n, L, d]

    def activations(
        self, x: Float[torch.Tensor, "... d_model"], in_scale: Float[torch.Tensor, ""]
    ) -> Float[torch.Tensor, "... read"]:
        """Only these features' JumpReLU activations, from the MLP input ``x``."""
        pre = (x.to(self.W_enc) * in_scale) @ self.W_enc + self.b_enc  # the transcoder's dtype and device
        return pre * (pre > self.threshold)


@torch.no_grad()
def off_layers(
    clt: CrossLayerTranscoder, reads: Sequence[Feature], writes: Sequence[Feature], gains: Sequence[float]
) -> dict[int, OffLayer]:
    """The off-features ``reads``, by the layer they are read at, each written along ``writes`` with ``gains``."""
    layers = {}
    for layer in sorted({f[0] for f in reads}):
        rows = [i for i, f in enumerate(reads) if f[0] == layer]
        index = torch.tensor([reads[i][1] for i in rows], device=clt.W_enc.device)
        layers[layer] = OffLayer(
            layer,
            clt.W_enc[layer][:, index].detach(),
            clt.b_enc[layer, index].detach(),
            clt.threshold[layer, index].detach(),
            write_vectors(clt, [writes[i] for i in rows], [gains[i] for i in rows]),
        )
    return layers


@torch.no_grad()
def on_vectors(
    clt: CrossLayerTranscoder,
    writes: Sequence[Feature],
    gains: Sequence[float],
    values: Sequence[float],
    strength: float,
) -> Float[torch.Tensor, "layer d_model"]:
    """The constant on-features add at every layer's MLP output: ``strength * values`` along ``writes``."""
    vectors = write_vectors(clt, writes, gains)
    values_ = torch.tensor(values, dtype=vectors.dtype, device=vectors.device)
    return strength * torch.einsum("n,nld->ld", values_, vectors)


# --------------------------------------------------------------------------- hooks


@dataclass
class Plan:
    """One intervention made ready for the hooks.

    Its off-features per layer and the constant its on-features add at every layer (None: no
    on-features).
    """

    strength: float
    off: dict[int, OffLayer]
    on: torch.Tensor | None  # [L, d]
    targets: frozenset[int]  # the layers whose MLP output it changes

    @classmethod
    def of(
        cls,
        clt: CrossLayerTranscoder,
        strength: float,
        off: dict[int, OffLayer],
        on: Float[torch.Tensor, "layer d_model"] | None,
    ) -> Plan:
        """The plan that reads ``off`` and adds ``on``, with the layers it changes."""
        targets = {t for t in range(clt.config.n_layers) if any(clt.config.writes(layer, t) for layer in off)}
        if on is not None:
            targets |= {t for t in range(clt.config.n_layers) if on[t].any()}
        return cls(strength, off, on, frozenset(targets))


def _block(rows: int, blocks: int) -> int:
    """The rows of each block, refusing a batch that does not split evenly."""
    if rows % blocks:
        raise ValueError(f"A batch of {rows} rows cannot be split into {blocks} equal blocks, one per intervention.")
    return rows // blocks


class SteeringHooks:
    """The hooks that carry out ``plans[k]`` on block ``k`` of a batch's rows (None: left as it is).

    Args:
        clt: The transcoder.
        plans: One plan per block of rows.
        start: Steer only positions ``>= start``.
    """

    def __init__(self, clt: CrossLayerTranscoder, plans: list[Plan | None], start: int = 0):
        self.clt, self.plans, self.start = clt, plans, start
        self.in_scale = clt.in_scale.detach()
        self.changes: dict[tuple[int, int], torch.Tensor] = {}  # (block, layer) -> [n, pos, features read]

    def hooks(self) -> list[tuple[str, Hook]]:
        """``(hook name, hook)`` pairs: a read at each off-feature layer, a write at each changed output."""
        L = self.clt.config.n_layers
        read_layers = sorted({layer for plan in self.plans if plan is not None for layer in plan.off})
        hooks = [(mlp_in_hook(layer), self.read(layer)) for layer in read_layers]
        hooks += [
            (mlp_out_hook(t), self.write(t))
            for t in range(L)
            if any(p is not None and t in p.targets for p in self.plans)
        ]
        return hooks

    def kept(self, change: Float[torch.Tensor, "... pos X"]) -> Float[torch.Tensor, "... pos X"]:
        """``change`` ``[..., pos, X]`` with the positions before ``start`` zeroed."""
        start = self.start
        return change * (torch.arange(change.shape[-2], device=change.device) >= start)[:, None] if start else change

    def read(self, layer: int) -> Hook:
        """The hook at ``layer``'s MLP input: each block's off-feature changes, kept until written."""

        def hook(x: torch.Tensor, hook: object) -> None:
            n = _block(x.shape[0], len(self.plans))
            for k, plan in enumerate(self.plans):
                if plan is not None and layer in plan.off:
                    a = plan.off[layer].activations(x[k * n : (k + 1) * n], self.in_scale[layer])
                    self.changes[k, layer] = self.kept(-plan.strength * a)

        return hook

    def delta(
        self, k: int, plan: Plan, target: int, like: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "... pos d_model"]:
        """What block ``k`` adds at ``target``'s MLP output (``like``: that output)."""
        clt = self.clt
        total = torch.zeros((), dtype=clt.b_dec.dtype, device=clt.b_dec.device)
        for layer, off in plan.off.items():
            if clt.config.writes(layer, target):
                total = total + self.changes[k, layer] @ off.vectors[:, target, :]
        if plan.on is not None and plan.on[target].any():
            constant = plan.on[target].expand(like.shape[-2], -1)
            total = total + self.kept(constant)
        return total

    def write(self, target: int) -> Hook:
        """The hook at ``target``'s MLP output: each block's change added."""

        def hook(out: torch.Tensor, hook: object) -> torch.Tensor:
            n = _block(out.shape[0], len(self.plans))
            blocks = [
                out[k * n : (k + 1) * n]
                if plan is None or target not in plan.targets
                else out[k * n : (k + 1) * n] + self.delta(k, plan, target, out).to(out)
                for k, plan in enumerate(self.plans)
            ]
            return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

        return hook


__all__ = [
    "Feature",
    "Hook",
    "OffLayer",
    "Plan",
    "SteeringHooks",
    "check_feature",
    "check_model",
    "off_layers",
    "on_vectors",
    "write_vectors",
]
