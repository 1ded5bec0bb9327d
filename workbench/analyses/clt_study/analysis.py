"""The clt-study slice: the multilingual CLT paper's findings, each asked of the run's model.

Each is answered from the numbers of the clt slices' results. Every number is over the layers the
transcoder covers (a layer without features has no features to count and no overlap to measure).
The summary holds numbers and feature names only, never corpus text, so a study's summary can be
shipped and read without the corpus (the notebook ``09_gemma_transcoders.ipynb`` reads one).

The claims (the paper's, on models trained with controlled language mixtures):

* shared multilingual features peak in the middle layers;
* language-specific features concentrate in the late layers;
* language-identity features sit in the late layers;
* the overlap of attribution graphs' kept features across languages is near 0 at the first layer,
  peaks in the middle and is lower late (decided on the shape: lower at the first and the last
  covered layer than at a peak between them; the evidence gives the values);
* switching one language's identity features off and another's on steers the output language,
  where count- and norm-matched random features do not.

Two more questions are asked where the run has their analyses (``probe``, ``clt-diff``):

* is a token's language linearly readable from the residual stream in the first third of the
  layers, on tokens shared between languages (where the token alone does not tell)?
* does fine-tuning one language's neurons (MWork's enhancement, ``--clt-diff-tuned finetune``)
  strengthen that language's own features more than the other languages' own features?

The claims are decided in [`workbench.analyses.clt_study.findings`][workbench.analyses.clt_study.findings].
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_study.findings import findings, finite_mean, layer_list
from workbench.analyses.clt_study.inputs import (
    DiffResult,
    FeaturesResult,
    GraphResult,
    ProbeResult,
    SteerResult,
    TrainResult,
)
from workbench.analyses.clt_study.options import Options
from workbench.analyses.clt_study.plots import study_figure
from workbench.analyses.clt_study.result import Result
from workbench.clt.transcoder import CLTConfig
from workbench.data.corpus import Corpus
from workbench.models.model import Model, model_source
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def summarize(
    model: str,
    train: TrainResult,
    features: FeaturesResult,
    steer: SteerResult,
    graph: GraphResult,
    probe: ProbeResult | None = None,
    diff: DiffResult | None = None,
) -> Result:
    """The study's numbers from the four results, the probe's and the diff's where given, and its findings.

    Every per-layer number is over the transcoder's covered layers.
    """
    layers = list(CLTConfig(**train.config).covered)
    worst = {q.layer: q for q in train.worst()}
    counts = {row["layer"]: row for row in features.layer_counts}
    overlap = graph.jaccard.get("all") or [math.nan] * graph.n_layers
    identity = [
        {
            "language": lang,
            "feature": card.name(),
            "layer": card.layer,
            "frequency": card.frequency[lang],
            "other": max((v for k, v in card.frequency.items() if k != lang), default=0.0),
        }
        for lang, cards in features.identity.items()
        for card in cards
    ]
    rows = graph.rows
    ranks = [r.answer_rank for r in rows if r.answer_rank >= 0]
    graphs = {
        "graphs": len(rows),
        "replacement": finite_mean([r.replacement for r in rows]),
        "completeness": finite_mean([r.completeness for r in rows]),
        "answers": len(ranks),
        "answers_top": sum(r == 0 for r in ranks),
    }
    result = Result(
        model,
        list(features.languages),
        train.config["n_layers"],
        layers,
        [worst[l].fvu for l in layers],
        [worst[l].l0 for l in layers],
        {k: [v.original, v.replacement] for k, v in train.loss.items()},
        [int(counts[l]["multilingual"]) for l in layers],
        [int(counts[l]["specific"]) for l in layers],
        identity,
        [float(overlap[l]) for l in layers],
        graphs,
        [_plain(row) for row in steer.best()],
    )
    result.probe = _probe_numbers(probe) if probe is not None else {}
    result.diff = _diff_numbers(diff) if diff is not None and diff.target else {}
    result.findings = findings(result)
    return result


def _probe_numbers(probe: ProbeResult) -> dict:
    threshold = float(probe.settings.get("readable", 0.9))
    return {
        "points": [s.point for s in probe.scores],
        "accuracy": [s.accuracy for s in probe.scores],
        "shared": [s.shared for s in probe.scores],
        "baselines": dict(probe.baselines),
        "threshold": threshold,
        "readable_from": probe.readable_from(threshold),
    }


def _diff_numbers(diff: DiffResult) -> dict:
    """Per layer, the fine-tuned language's own features' frequency change and the other languages' mean."""
    own = diff.strength_change(diff.target)
    others = {lang: diff.strength_change(lang) for lang in diff.languages if lang != diff.target}
    layers = sorted(set(own) | {layer for change in others.values() for layer in change})
    return {
        "target": diff.target,
        "layers": layers,
        "own": [own.get(layer, math.nan) for layer in layers],
        "others": [finite_mean([c[layer] for c in others.values() if layer in c]) for layer in layers],
    }


def _plain(row: dict) -> dict:
    return {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in row.items()}


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Summarise the run's clt results."""
    name = model_source(model).get("name", store.run.model)
    result = summarize(
        name,
        store.result("clt-train"),
        store.result("clt-features"),
        store.result("clt-steer"),
        store.result("clt-graph"),
        store.result_if_run("probe"),
        store.result_if_run("clt-diff"),
    )
    result.settings = options.to_dict()
    return store.keep(NAME, result)


def figures(result: Result) -> dict[str, go.Figure]:
    """The study's one figure: every claim's numbers per layer."""
    return {"clt_study": study_figure(result)}


def verdict(result: Result) -> str:
    """The claims the model bears out, and those it does not."""
    said = {True: "holds", False: "does not hold", None: "cannot be measured here"}
    parts = [f"{f.claim} {said[f.holds].capitalize()}: {f.evidence}" for f in result.findings]
    agree = sum(f.holds is True for f in result.findings)
    return f"{result.model} bears out {agree} of the paper's {len(result.findings)} claims. " + " ".join(parts)


def section(result: Result) -> Section:
    """The report's section: the claims asked of the model, the verdict, the numbers and the findings."""
    intro = (
        f"The multilingual CLT paper's findings asked of {result.model}, over the layers the transcoder covers "
        f"({layer_list(result.layers)} of {result.n_layers}), from the numbers of the transcoder, feature, steering "
        "and graph sections above (and of the language probe and the model diff, where the run has them). Layers "
        "in the last third count as late, in the first third as early."
    )
    return Section(
        "The paper's findings on this model",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table(), [asdict(f) for f in result.findings]],
    )
