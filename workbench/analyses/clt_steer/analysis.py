"""The clt-steer slice: on prompts in a source language, switch its identity features off and a
target language's on ([`workbench.clt.steering`][workbench.clt.steering]), at a sweep of strengths; measure the
greedy continuation's language (the token language labels) and the probability mass on target
tokens, against a control that makes the same changes along random features' decoders.

Each (source, target) pair is a part (``<source>-<target>.json``), reused by a resumed run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch

from workbench.analyses.clt_features.analysis import FeatureCard
from workbench.analyses.clt_steer.options import Options
from workbench.analyses.clt_steer.plots import pairs_figure, strength_figure
from workbench.analyses.clt_train.analysis import transcoder
from workbench.clt.steering import Intervention, matched_control, steer_measures
from workbench.data.corpus import Corpus
from workbench.errors import WorkbenchError
from workbench.language.langid import default_classifier, vocab_languages
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS
WORKS_SHARE, WORKS_MARGIN = 0.5, 0.25  # a pair is steered when the target's share reaches 0.5, 0.25 above control


@dataclass
class SteerRow:
    """One (source, target, strength, kind) cell: shares of labelled continuation tokens and
    probability mass on each language's tokens.
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


@dataclass
class _Pair:
    rows: list[SteerRow]


@dataclass
class Result(Base):
    """Every cell of the sweep, and the settings."""

    JSON = "clt-steer.json"

    rows: list[SteerRow]
    prompts: dict[str, int]  # source -> prompts used
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [asdict(row) for row in self.rows]

    def mean(self, key: str, kind: str, strength: float) -> float:
        """Mean of ``key`` (e.g. ``share_target``) over the pairs at one strength and kind,
        leaving out cells with no labelled token (NaN where every cell has none).
        """
        kept = [
            v for r in self.rows if r.kind == kind and r.strength == strength and not math.isnan(v := getattr(r, key))
        ]
        return float(np.mean(kept)) if kept else float("nan")

    def best(self) -> list[dict]:
        """Per pair, the strength where the identity intervention gives the target's share its
        highest, with the control's share at that strength.
        """
        out = []
        for source, target in dict.fromkeys((r.source, r.target) for r in self.rows):
            cells = {(r.strength, r.kind): r for r in self.rows if (r.source, r.target) == (source, target)}
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
                    and ident.share_target - max(_ordered(control.share_target if control else 0.0), 0.0)
                    >= WORKS_MARGIN,
                    "top mass": cells[by_mass, "identity"].mass_target,
                    "at strength": by_mass,
                    "control mass": mass_control.mass_target if mass_control else float("nan"),
                }
            )
        return out


def _ordered(share: float) -> float:
    """A share for ordering: NaN (no continuation token carried a language label) lowest."""
    return -1.0 if math.isnan(share) else share


def _percent(share: float) -> str:
    return "none labelled" if math.isnan(share) else f"{share:.0%}"


def prompts_of(model, corpus: Corpus, store: Store, options: Options) -> dict[str, torch.Tensor]:
    """Per source language, ``[n, 1 + prompt_tokens]`` prompts (BOS, then the verse's first tokens)."""
    docs = store.documents(model, corpus, options.prompts, "heldout", seed_offset=2)
    out = {}
    for lang, tokens in docs.items():
        long_enough = [t[: options.prompt_tokens + 1] for t in tokens if len(t) > options.prompt_tokens]
        if long_enough:
            out[lang] = torch.stack(long_enough).to(model.cfg.device)
    return out


def run(model, corpus: Corpus, options: Options, store: Store) -> Result:
    """The sweep over every (source, target) pair of different languages."""
    clt = transcoder(store)
    features = store.result("clt-features")
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    prompts = prompts_of(model, corpus, store, options)
    sources = list(options.sources) or store.languages
    targets = list(options.targets) or store.languages
    short = [lang for lang in sources if lang not in prompts]
    if short:
        raise WorkbenchError(
            f"No held-out verse of {', '.join(short)} has {options.prompt_tokens + 1} tokens; "
            "lower --clt-steer-prompt-tokens."
        )

    def pair(source: str, target: str) -> _Pair:
        return _Pair(_sweep(model, clt, features, vocab, prompts[source], source, target, options, store.run.seed))

    work = {f"{s}-{t}.json": (lambda s=s, t=t: pair(s, t)) for s in sources for t in targets if s != t}
    rows = [row for done in store.reuse_json_each(NAME, work, _Pair) for row in done.rows]  # pairs shared by processes
    return store.keep(NAME, Result(rows, {lang: len(p) for lang, p in prompts.items()}, options.to_dict()))


def _sweep(
    model, clt, features, vocab, prompts: torch.Tensor, source: str, target: str, options: Options, seed: int
) -> list[SteerRow]:
    """Identity and control interventions at every strength for one pair, in one batched sweep
    (strength 0 adds no hook: measured once, for both kinds).
    """
    off_cards = features.identity.get(source, [])[: options.features]
    on_cards = features.identity.get(target, [])[: options.features]
    exclude = {(c.layer, c.feature) for cards in features.identity.values() for c in cards}
    identity = _intervention(off_cards, on_cards, target)
    control = matched_control(clt, identity, seed, exclude)  # the same random features at every strength
    cells = [
        (strength, kind, iv.with_strength(strength))
        for strength in options.strengths
        for kind, iv in (("identity", identity), ("control", control))
        if strength != 0 or kind == "identity"
    ]
    measured = steer_measures(
        model, clt, prompts, [iv for _, _, iv in cells], vocab, source, target, options.new_tokens
    )
    found = {(strength, kind): m for (strength, kind, _), m in zip(cells, measured)}
    rows = []
    for strength in options.strengths:
        for kind in ("identity", "control"):
            m = found.get((strength, kind)) or found[strength, "identity"]
            rows.append(SteerRow(source, target, strength, kind, m.share_b, m.share_a, m.mass_b, m.mass_a, m.labelled))
    return rows


def _intervention(off: list[FeatureCard], on: list[FeatureCard], target: str) -> Intervention:
    """Switch ``off``'s features off and ``on``'s on at their mean where active on ``target`` (strength 1)."""
    return Intervention(
        off=tuple((c.layer, c.feature) for c in off),
        on=tuple((c.layer, c.feature) for c in on),
        on_values=tuple(c.active_mean[target] for c in on),
        strength=1.0,
    )


def figures(result: Result) -> dict[str, go.Figure]:
    return {"clt_steer_strength": strength_figure(result), "clt_steer_pairs": pairs_figure(result)}


def verdict(result: Result) -> str:
    """In how many pairs the identity features steer the output language, and the control."""
    best = result.best()
    works = [b for b in best if b["works"]]
    top = max(r.strength for r in result.rows)
    low = min(r.strength for r in result.rows)
    ident, control, base = (
        result.mean("share_target", kind, s) for s, kind in ((top, "identity"), (top, "control"), (low, "identity"))
    )
    if all(math.isnan(v) for v in (ident, control, base)):
        return "No continuation token carried a language label (the token labels know none of this vocabulary)."
    text = (
        f"Switching identity features steers the continuation into the target language in {len(works)} of {len(best)} "
        f"pairs (target share >= {WORKS_SHARE} and >= {WORKS_MARGIN} above the matched control). At strength {top:g} the "
        f"target language's share of labelled continuation tokens is {_percent(ident)} on average, against "
        f"{_percent(control)} for the control and {_percent(base)} at the lowest strength."
    )
    fails = [b for b in best if not b["works"]]
    if fails and works:
        text += (
            (
                " Not steered by that measure (with the highest probability mass on target tokens, and the "
                "control's at that strength): "
            )
            + "; ".join(
                f"{b['source']}->{b['target']} ({b['top mass']:.2f} vs {b['control mass']:.2f})" for b in fails[:8]
            )
            + ("..." if len(fails) > 8 else "")
            + ". A continuation with no labelled token has no share: mass is then the only measure."
        )
    return text


def section(result: Result) -> Section:
    s = result.settings
    intro = (
        f"Prompts: the first {s.get('prompt_tokens')} tokens of held-out verses in the source language; greedy "
        f"continuations of {s.get('new_tokens')} tokens. At strength s, the source language's {s.get('features')} identity "
        "features (clt-features) go from activation a to (1 - s) a (s = 1: off) and the target's are switched on at s "
        "times their mean activation where active; the changes are written along the features' decoders into the MLP "
        "outputs of the running model (the MLPs themselves still run). The control makes the same changes, token by "
        "token, along the decoders of random features of the same layers, rescaled to the same norm. The share is over "
        "continuation tokens that carry a language label; the mass is the probability on tokens labelled with the "
        "language, averaged over steps."
    )
    return Section(
        "Steering the output language with transcoder features",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.best()],
    )
