"""Steering the output language with identity features: one language pair's sweep over strengths.

On prompts in a source language, the source's identity features go from activation ``a`` to
``(1 - s) a`` and the target's are switched on at ``s`` times their mean where active
([`Intervention`][workbench.clt.steering.steer.Intervention]); a matched control makes the same changes
along random features' decoders. Each cell of the sweep says which language the greedy
continuation is in: its share of language-labelled tokens and the probability mass per language.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Int

from workbench.clt.features.cards import FeatureCard
from workbench.clt.steering.steer import Intervention, matched_control, steer_measures
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.language.vocabulary import VocabLanguages
from workbench.models.model import Model

WORKS_SHARE = 0.5
"""The target's share of labelled continuation tokens from which a pair counts as steered."""
WORKS_MARGIN = 0.25
"""How far above the matched control's share the target's must also be."""


@dataclass
class SteerRow:
    """One (source, target, strength, kind) cell of the sweep.

    It holds the shares of labelled continuation tokens and the probability mass on each
    language's tokens.
    """

    source: str
    target: str
    strength: float
    kind: str  # "identity" or "control"
    share_target: float
    share_source: float
    mass_target: float
    mass_source: float
    labelled: int


def identity_intervention(off: list[FeatureCard], on: list[FeatureCard], target: str) -> Intervention:
    """Switch ``off``'s features off and ``on``'s on at their mean where active on ``target`` (strength 1)."""
    return Intervention(
        off=tuple((c.layer, c.feature) for c in off),
        on=tuple((c.layer, c.feature) for c in on),
        on_values=tuple(c.active_mean[target] for c in on),
        strength=1.0,
    )


def sweep(
    model: Model,
    clt: CrossLayerTranscoder,
    identity: dict[str, list[FeatureCard]],
    vocab: VocabLanguages,
    prompts: Int[torch.Tensor, "batch pos"],
    pair: tuple[str, str],
    features: int,
    strengths: tuple[float, ...],
    new_tokens: int,
    seed: int,
) -> list[SteerRow]:
    """Identity and control interventions at every strength for one pair, in one batched sweep.

    Strength 0 adds no hook: it is measured once, and its row repeated for both kinds.

    Args:
        model: The model steered.
        clt: The transcoder whose decoders carry the changes.
        identity: Per language, its identity features' cards, best first.
        vocab: The language labels of the vocabulary.
        prompts: The source language's prompts (BOS first).
        pair: The source language (switched off) and the target (switched on).
        features: Identity features per language switched.
        strengths: The strengths of the sweep.
        new_tokens: Greedy continuation length.
        seed: Seed of the control's random features.

    Returns:
        One row per strength and kind (identity, then control), strengths in the given order.
    """
    source, target = pair
    exclude = {(c.layer, c.feature) for cards in identity.values() for c in cards}
    ident = identity_intervention(identity.get(source, [])[:features], identity.get(target, [])[:features], target)
    control = matched_control(clt, ident, seed, exclude)  # the same random features at every strength
    cells = [
        (strength, kind, iv.with_strength(strength))
        for strength in strengths
        for kind, iv in (("identity", ident), ("control", control))
        if strength != 0 or kind == "identity"
    ]
    measured = steer_measures(model, clt, prompts, [iv for _, _, iv in cells], vocab, source, target, new_tokens)
    found = {(strength, kind): m for (strength, kind, _), m in zip(cells, measured)}
    rows = []
    for strength in strengths:
        for kind in ("identity", "control"):
            m = found.get((strength, kind)) or found[strength, "identity"]
            rows.append(SteerRow(source, target, strength, kind, m.share_b, m.share_a, m.mass_b, m.mass_a, m.labelled))
    return rows


def best_per_pair(rows: list[SteerRow]) -> list[dict]:
    """Per pair, the strength where the identity intervention gives the target's share its highest.

    Each pair's row gives that strength's identity and control shares, the share at the lowest
    strength, whether the pair is steered (the target's share at least
    [`WORKS_SHARE`][workbench.clt.steering.identity.WORKS_SHARE] and
    [`WORKS_MARGIN`][workbench.clt.steering.identity.WORKS_MARGIN] above the control's), and the
    highest probability mass on target tokens with its strength and the control's mass there.
    """
    out = []
    for source, target in dict.fromkeys((r.source, r.target) for r in rows):
        cells = {(r.strength, r.kind): r for r in rows if (r.source, r.target) == (source, target)}
        strength = max(
            (s for s, k in cells if k == "identity"), key=lambda s: _ordered(cells[s, "identity"].share_target)
        )
        ident, control = cells[strength, "identity"], cells.get((strength, "control"))
        by_mass = max((s for s, k in cells if k == "identity"), key=lambda s: cells[s, "identity"].mass_target)
        mass_control = cells.get((by_mass, "control"))
        out.append(
            {
                "source": source,
                "target": target,
                "strength": strength,
                "identity": ident.share_target,
                "control": control.share_target if control else float("nan"),
                "baseline": cells[min(s for s, _ in cells), "identity"].share_target,
                "works": ident.share_target >= WORKS_SHARE  # no labelled token: no share of the target
                and ident.share_target - max(_ordered(control.share_target if control else 0.0), 0.0) >= WORKS_MARGIN,
                "top mass": cells[by_mass, "identity"].mass_target,
                "at strength": by_mass,
                "control mass": mass_control.mass_target if mass_control else float("nan"),
            }
        )
    return out


def _ordered(share: float) -> float:
    """A share for ordering: NaN (no continuation token carried a language label) lowest."""
    return -1.0 if math.isnan(share) else share
