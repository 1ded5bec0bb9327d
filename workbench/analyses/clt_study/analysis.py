"""The clt-study slice: the multilingual CLT paper's findings, each asked of the run's model and
answered from the numbers of the clt slices' results.

Every number is over the layers the transcoder covers (a layer without features has no features
to count and no overlap to measure). The summary holds numbers and feature names only, never
corpus text, so a study's summary can be shipped and read without the corpus (the notebook
``09_gemma_transcoders.ipynb`` reads one).

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import plotly.graph_objects as go

from workbench.analyses.clt_study.options import Options
from workbench.analyses.clt_study.plots import study_figure
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS


@dataclass
class Finding:
    """One claim of the paper, whether the model bears it out (None: not measurable), and why."""

    claim: str
    holds: bool | None
    evidence: str

    def __post_init__(self) -> None:
        if self.holds is not None:
            self.holds = bool(self.holds)  # numpy's booleans are not ``True``


@dataclass
class Result(Base):
    """The numbers behind each claim, per covered layer, and the findings."""

    JSON = "clt-study.json"

    model: str
    languages: list[str]
    n_layers: int
    layers: list[int]  # the covered layers; every per-layer list below follows them
    fvu: list[float]  # worst over languages
    l0: list[float]  # worst over languages
    loss: dict[str, list[float]]  # language -> [original, replacement] nats per token
    multilingual: list[int]
    specific: list[int]
    identity: list[dict]  # language, feature, layer, own frequency, highest other frequency
    jaccard: list[float]  # mean over items and language pairs (NaN where no graph kept a feature)
    graphs: dict  # graphs, mean replacement and completeness scores, answers at the top
    steering: list[dict]  # per pair: source, target, strength, identity, control, baseline, works
    findings: list[Finding] = field(default_factory=list)
    probe: dict = field(default_factory=dict)  # per residual point accuracy (all, shared), baselines, readable_from
    diff: dict = field(default_factory=dict)  # the fine-tuned language, per layer own vs others' feature change
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [
            {
                "layer": layer,
                "fvu": self.fvu[i],
                "l0": self.l0[i],
                "multilingual": self.multilingual[i],
                "specific": self.specific[i],
                "jaccard": self.jaccard[i],
            }
            for i, layer in enumerate(self.layers)
        ]


def summarize(model: str, train, features, steer, graph, probe=None, diff=None) -> Result:
    """The study's numbers from the four results (over the transcoder's covered layers), the probe's
    and the diff's where given, and its findings.
    """
    from workbench.clt.transcoder import CLTConfig

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
        "replacement": _mean([r.replacement for r in rows]),
        "completeness": _mean([r.completeness for r in rows]),
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


def _probe_numbers(probe) -> dict:
    threshold = float(probe.settings.get("readable", 0.9))
    return {
        "points": [s.point for s in probe.scores],
        "accuracy": [s.accuracy for s in probe.scores],
        "shared": [s.shared for s in probe.scores],
        "baselines": dict(probe.baselines),
        "threshold": threshold,
        "readable_from": probe.readable_from(threshold),
    }


def _diff_numbers(diff) -> dict:
    """Per layer, the fine-tuned language's own features' frequency change and the other languages' mean."""
    own = diff.strength_change(diff.target)
    others = {lang: diff.strength_change(lang) for lang in diff.languages if lang != diff.target}
    layers = sorted(set(own) | {layer for change in others.values() for layer in change})
    return {
        "target": diff.target,
        "layers": layers,
        "own": [own.get(layer, math.nan) for layer in layers],
        "others": [_mean([c[layer] for c in others.values() if layer in c]) for layer in layers],
    }


def findings(result: Result) -> list[Finding]:
    """Each of the paper's claims against the study's numbers."""
    layers, n = result.layers, len(result.layers)
    late = [i for i, layer in enumerate(layers) if layer >= 2 * result.n_layers / 3]
    out = []
    multi = np.array(result.multilingual)
    peak = int(np.argmax(multi))
    out.append(
        Finding(
            "Shared multilingual features peak in the middle layers.",
            None if n < 3 or not multi.any() else 0 < peak < n - 1,
            f"Multilingual features per layer ({_layers(layers)}): {_list(result.multilingual)}; most in "
            f"layer {layers[peak]}.",
        )
    )
    spec = np.array(result.specific)
    top = int(np.argmax(spec))
    out.append(
        Finding(
            "Language-specific features concentrate in the late layers.",
            None if not late or not spec.any() else top in late,
            f"Language-specific features per layer: {_list(result.specific)}; most in layer {layers[top]} "
            f"(late: layer {math.ceil(2 * result.n_layers / 3)} on).",
        )
    )
    strongest = {}
    for row in result.identity:
        strongest.setdefault(row["language"], row)
    where = [row["layer"] for row in strongest.values()]
    out.append(
        Finding(
            "Language-identity features sit in the late layers.",
            None if not where else float(np.median(where)) >= 2 * result.n_layers / 3,
            "Strongest identity feature per language: "
            + "; ".join(
                f"{lang} {row['feature']} ({row['frequency']:.0%} of its tokens, at most "
                f"{row['other']:.0%} of another's)"
                for lang, row in strongest.items()
            )
            + ".",
        )
    )
    jac = np.array(result.jaccard, dtype=float)
    measured = ~np.isnan(jac)
    shape = None
    if measured.sum() >= 3:
        values = np.nan_to_num(jac)
        best = int(np.argmax(values))
        shape = 0 < best < n - 1 and values[0] < values[best] and values[-1] < values[best]
    out.append(
        Finding(
            "Graph overlap across languages is low at the first layer, peaks in the middle, is lower late "
            "(the paper: near 0 at the first layer).",
            shape,
            f"Jaccard of kept features per layer: {_list(result.jaccard, 3)} over "
            f"{result.graphs['graphs']} graphs (replacement score {result.graphs['replacement']:.2f}, "
            f"completeness {result.graphs['completeness']:.2f}; the answer is the top token in "
            f"{result.graphs['answers_top']} of {result.graphs['answers']} prompts).",
        )
    )
    works = [row for row in result.steering if row["works"]]
    out.append(
        Finding(
            "Switching identity features steers the output language; matched random features do not.",
            None if not result.steering else len(works) * 2 > len(result.steering),
            f"Steering works in {len(works)} of {len(result.steering)} language pairs; target share "
            f"{_mean([r['identity'] for r in result.steering]):.0%} with identity features against "
            f"{_mean([r['control'] for r in result.steering]):.0%} with the control at the same "
            "strength.",
        )
    )
    out += [f for f in (_probe_finding(result), _diff_finding(result)) if f is not None]
    return out


def _probe_finding(result: Result) -> Finding | None:
    p = result.probe
    if not p:
        return None
    where, early = p["readable_from"], result.n_layers / 3
    b, shared = p["baselines"], _floats(p["shared"])
    best = int(np.argmax(np.nan_to_num(shared, nan=-1.0)))
    return Finding(
        "A token's language is linearly readable from the residual stream in the early layers.",
        None if all(math.isnan(v) for v in shared) else where is not None and where <= early,
        f"A linear probe's held-out accuracy on tokens shared between languages, per residual point "
        f"(0: embeddings): {_list(p['shared'], 2)}; it reaches {p['threshold']:.0%} "
        f"{'at point ' + str(where) if where is not None else 'nowhere'} (early: up to point "
        f"{math.floor(early)}), best {shared[best]:.0%} at point {best}; the token id alone gives "
        f"{b['token_shared']:.0%} on them ({b['token']:.0%} on all tokens).",
    )


def _diff_finding(result: Result) -> Finding | None:
    d = result.diff
    if not d:
        return None
    own, others = np.array(_floats(d["own"])), np.array(_floats(d["others"]))
    measured = not np.isnan(own).all()
    mean_own, mean_others = float(np.nanmean(own)) if measured else math.nan, _mean(list(others))
    top = d["layers"][int(np.nanargmax(own))] if measured else None
    return Finding(
        f"Fine-tuning {d['target']}'s neurons strengthens {d['target']}'s own features more than other "
        "languages' own features.",
        None if not measured else mean_own > 0 and (math.isnan(mean_others) or mean_own > mean_others),
        f"Frequency change of {d['target']}-specific features on {d['target']} tokens per layer "
        f"({_layers(d['layers'])}): {_list(d['own'], 4)} (mean {mean_own:+.4f}, most in layer {top}); other "
        f"languages' own features: {_list(d['others'], 4)} (mean {mean_others:+.4f}).",
    )


def run(model, corpus, options: Options, store: Store) -> Result:
    """Summarise the run's clt results."""
    from workbench.models.loading import model_source

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
    return {"clt_study": study_figure(result)}


def verdict(result: Result) -> str:
    """The claims the model bears out, and those it does not."""
    said = {True: "holds", False: "does not hold", None: "cannot be measured here"}
    parts = [f"{f.claim} {said[f.holds].capitalize()}: {f.evidence}" for f in result.findings]
    agree = sum(f.holds is True for f in result.findings)
    return f"{result.model} bears out {agree} of the paper's {len(result.findings)} claims. " + " ".join(parts)


def section(result: Result) -> Section:
    intro = (
        f"The multilingual CLT paper's findings asked of {result.model}, over the layers the transcoder covers "
        f"({_layers(result.layers)} of {result.n_layers}), from the numbers of the transcoder, feature, steering "
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


def _mean(values) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _floats(values) -> list[float]:
    """Numbers as floats, a missing one (saved as null) as NaN."""
    return [math.nan if v is None else float(v) for v in values]


def _list(values, digits: int = 0) -> str:
    return ", ".join(
        "-" if v is None or isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}" if digits else str(v)
        for v in values
    )


def _layers(layers: list[int]) -> str:
    return ", ".join(map(str, layers))


def _plain(row: dict) -> dict:
    return {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in row.items()}
