"""The clt-steer slice: steer prompts in a source language towards a target language with identity features.

On prompts in a source language, switch its identity features off and a target language's on
([`workbench.clt.steering.identity`][workbench.clt.steering.identity]), at a sweep of strengths; measure
the greedy continuation's language (the token language labels) and the probability mass on target
tokens, against a control that makes the same changes along random features' decoders.

Each (source, target) pair is a part (``<source>-<target>.json``), reused by a resumed run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from jaxtyping import Int

from workbench.analyses.clt_steer.options import Options
from workbench.analyses.clt_steer.plots import pairs_figure, strength_figure
from workbench.analyses.clt_steer.result import Result
from workbench.clt.runs.transcoder import transcoder
from workbench.clt.steering.identity import WORKS_MARGIN, WORKS_SHARE, SteerRow, sweep
from workbench.data.corpus import Corpus
from workbench.errors import WorkbenchError
from workbench.language.classifier import default_classifier
from workbench.language.vocabulary import vocab_languages
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


@dataclass
class _Pair:
    rows: list[SteerRow]


def prompts_of(
    model: Model, corpus: Corpus, store: Store, options: Options
) -> dict[str, Int[torch.Tensor, "batch pos"]]:
    """Per source language, ``[n, 1 + prompt_tokens]`` prompts (BOS, then the verse's first tokens)."""
    docs = store.documents(model, corpus, options.prompts, "heldout", seed_offset=2)
    out = {}
    for lang, tokens in docs.items():
        long_enough = [t[: options.prompt_tokens + 1] for t in tokens if len(t) > options.prompt_tokens]
        if long_enough:
            out[lang] = torch.stack(long_enough).to(model.cfg.device)
    return out


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """The sweep over every (source, target) pair of different languages."""
    clt = transcoder(store)
    identity = store.result("clt-features").identity
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
        return _Pair(
            sweep(
                model,
                clt,
                identity,
                vocab,
                prompts[source],
                (source, target),
                options.features,
                options.strengths,
                options.new_tokens,
                store.run.seed,
            )
        )

    work = {f"{s}-{t}.json": (lambda s=s, t=t: pair(s, t)) for s in sources for t in targets if s != t}
    rows = [row for done in store.reuse_json_each(NAME, work, _Pair) for row in done.rows]  # pairs shared by processes
    return store.keep(NAME, Result(rows, {lang: len(p) for lang, p in prompts.items()}, options.to_dict()))


def _percent(share: float) -> str:
    return "none labelled" if math.isnan(share) else f"{share:.0%}"


def figures(result: Result) -> dict[str, go.Figure]:
    """The mean target share per strength, and the best strength per pair."""
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
        f"Switching identity features steers the continuation into the target language in {len(works)} of "
        f"{len(best)} pairs (target share >= {WORKS_SHARE} and >= {WORKS_MARGIN} above the matched control). At "
        f"strength {top:g} the target language's share of labelled continuation tokens is {_percent(ident)} on "
        f"average, against {_percent(control)} for the control and {_percent(base)} at the lowest strength."
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
    """The report's section: how prompts are steered and measured, the control, and the verdict."""
    s = result.settings
    intro = (
        f"Prompts: the first {s.get('prompt_tokens')} tokens of held-out verses in the source language; greedy "
        f"continuations of {s.get('new_tokens')} tokens. At strength s, the source language's {s.get('features')} "
        "identity features (clt-features) go from activation a to (1 - s) a (s = 1: off) and the target's are "
        "switched on at s times their mean activation where active; the changes are written along the features' "
        "decoders into the MLP outputs of the running model (the MLPs themselves still run). The control makes the "
        "same changes, token by token, along the decoders of random features of the same layers, rescaled to the "
        "same norm. The share is over continuation tokens that carry a language label; the mass is the probability "
        "on tokens labelled with the language, averaged over steps."
    )
    return Section(
        "Steering the output language with transcoder features",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.best()],
    )
