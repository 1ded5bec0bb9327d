"""The probe slice: per residual point, a linear probe for the token's language.

The probes ([`workbench.lens.probe`][workbench.lens.probe]) are trained on analysis verses and scored
on held-out ones, against the token-identity and majority baselines, on all tokens and on tokens
shared between languages.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from tqdm.auto import tqdm

from workbench.analyses.probe.options import Options
from workbench.analyses.probe.plots import accuracy_figure
from workbench.analyses.probe.result import Result
from workbench.data.corpus import Corpus
from workbench.lens.probe import probe_points, residual_rows
from workbench.models.model import Model
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Read the residual rows of both splits, fit and score a probe per point."""
    batch = store.run.batch_tokens
    train = residual_rows(model, store.documents(model, corpus, options.documents, "analysis"), options.tokens, batch)
    test = residual_rows(
        model, store.documents(model, corpus, options.heldout, "heldout"), max(1, options.tokens // 2), batch
    )
    bar = tqdm(total=train.X.shape[0], desc="probe: fit per residual point", disable=not store.show_progress)
    scores, baselines = probe_points(
        train, test, len(store.languages), options.l2, options.steps, progress=lambda point: bar.update()
    )
    bar.close()
    tokens = {"train": int(train.X.shape[1]), "heldout": int(test.X.shape[1])}
    result = Result(list(store.languages), model.cfg.n_layers, scores, baselines, tokens, options.to_dict())
    return store.keep(NAME, result)


def figures(result: Result) -> dict[str, go.Figure]:
    """Held-out accuracy per residual point against the baselines."""
    return {"probe_accuracy": accuracy_figure(result)}


def verdict(result: Result) -> str:
    """From which point the language is readable, and what the token alone gives."""
    threshold = float(result.settings.get("readable", 0.9))
    first, last = result.scores[0], result.scores[-1]
    best = max(result.scores, key=lambda s: -1.0 if math.isnan(s.shared) else s.shared)
    b = result.baselines
    where = result.readable_from(threshold)
    text = (
        f"A linear probe reads the language of {first.accuracy:.0%} of held-out tokens from the embeddings "
        f"and {best.accuracy:.0%} at residual point {best.point} ({last.accuracy:.0%} at the last); the token id "
        f"alone gives {b['token']:.0%}, the majority language {b['majority']:.0%}. "
    )
    if math.isnan(best.shared):
        return (
            text
            + "No held-out token occurs in the training text of two languages, so the context's part is unmeasured."
        )
    text += (
        f"On tokens shared between languages ({b['shared_share']:.0%} of held-out tokens), where the token does "
        f"not tell the language, the probe reaches {first.shared:.0%} at the embeddings and {best.shared:.0%} at "
        f"point {best.point}, against {b['token_shared']:.0%} for the token id alone: "
    )
    if where is None:
        return text + f"it never reaches {threshold:.0%}."
    early = where <= result.n_layers / 3
    return text + (
        f"it reaches {threshold:.0%} at point {where} of {result.n_layers}, "
        f"{'in the first third: the language is linearly readable early' if early else 'only after the first third'}."
    )


def section(result: Result) -> Section:
    """The report's section: how the probes are trained and scored, the baselines, and the verdict."""
    intro = (
        "Per residual point (0: the embeddings; l: the input of block l; the last: the last block's output), a "
        "multinomial logistic probe (L2-penalised, on standardised rows) is trained to tell a token's language from "
        f"its residual vector on {result.tokens['train']} tokens of analysis verses (as many per language) and scored "
        f"on {result.tokens['heldout']} held-out tokens. The baselines: each token id's most frequent training "
        "language, and the majority language. Shared tokens occur in the training text of two or more languages; "
        "only context can tell their language."
    )
    return Section(
        "Language probe on the residual stream",
        intro,
        verdict(result),
        list(figures(result).values()),
        [[{"baseline": k, "accuracy": v} for k, v in result.baselines.items()], result.table()],
    )
