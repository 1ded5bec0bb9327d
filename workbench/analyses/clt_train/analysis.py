"""The clt-train slice: train a cross-layer transcoder on the run's languages (or load one), then
measure it per layer and language on held-out verses: FVU, L0, dead features, and the replacement
model's next-token loss against the original model's.

Training streams the model's own activations ([`workbench.clt.train.train_clt`][workbench.clt.train.train_clt]) and
checkpoints into the run's parts, so an interrupted run resumes where it stopped; the finished
transcoder is a part too (``parts/clt-train-<fingerprint>/transcoder``: ``config.json`` and
safetensors), which the features and steering slices load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from workbench.analyses.clt_train.options import Options
from workbench.analyses.clt_train.plots import loss_figure, quality_figure, training_figure
from workbench.clt.quality import LayerQuality, layer_quality, replacement_loss
from workbench.clt.train import TrainSettings, train_clt
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder, check_fits
from workbench.data.corpus import Corpus
from workbench.errors import MissingResultError, WorkbenchError
from workbench.models.loading import model_source
from workbench.runs import distributed
from workbench.runs.report import Section
from workbench.runs.results import Result as Base
from workbench.runs.store import Store

NAME = Options.ANALYSIS
TRANSCODER = "transcoder"  # the part holding the finished transcoder
GOAL_FVU, GOAL_L0 = 0.2, 64.0  # the goal on the default zoo model


@dataclass
class Training:
    """How the transcoder was trained: time, rows per second, and the loss curve (every ``every`` steps)."""

    seconds: float
    rows: int
    steps: int
    every: int
    log: list[dict] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")


@dataclass
class Replacement:
    """Next-token loss (nats) of the original model and of the model with every MLP replaced."""

    original: float
    replacement: float


@dataclass
class Result(Base):
    """The transcoder's shape, how it was made, and its quality per language and layer."""

    JSON = "clt-train.json"

    config: dict
    source: str  # "trained", or the folder(s) it was loaded from
    transcoder: str  # the folder holding it, relative to the results folder ("" without one)
    quality: dict[str, list[LayerQuality]]  # language -> per layer, on held-out verses
    loss: dict[str, Replacement]
    training: Training | None = None
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [
            {"language": lang, "layer": q.layer, "fvu": q.fvu, "l0": q.l0, "dead": q.dead}
            for lang, rows in self.quality.items()
            for q in rows
        ]

    def worst(self) -> list[LayerQuality]:
        """Per covered layer, the worst FVU and L0 over languages (the goal must hold in every one)."""
        columns = list(zip(*self.quality.values()))  # per layer: that layer's row in every language
        return [
            LayerQuality(rows[0].layer, max(q.fvu for q in rows), max(q.l0 for q in rows), min(q.dead for q in rows))
            for rows in columns
        ]


def train_settings(options: Options, store: Store) -> TrainSettings:
    return TrainSettings(
        tokens=options.tokens,
        batch_tokens=options.batch,
        lr=options.lr,
        sparsity=options.sparsity,
        sparsity_warmup=options.warmup,
        dead_penalty=options.dead_penalty,
        block_documents=options.block_documents,
        forward_tokens=store.run.batch_tokens,
        seed=store.run.seed,
    )


def transcoder(store: Store) -> CrossLayerTranscoder:
    """The run's transcoder (trained or loaded by this slice), for the slices that read it."""

    def missing() -> CrossLayerTranscoder:
        raise MissingResultError("No transcoder in this run yet; run clt-train first.")

    return store.reuse(
        NAME,
        TRANSCODER,
        missing,
        lambda path: CrossLayerTranscoder.load(path, store.run.device),
        lambda clt, path: clt.save(path),
    )


def run(model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Train (or resume, or load) the transcoder, then measure it on held-out verses."""
    name = model_source(model).get("name", store.run.model)
    training = None
    if options.load:
        clt, source = _keep(store, _loaded(options.load, model, name)), options.load
    else:
        training = store.reuse_json(
            NAME, "training.json", lambda: _train(model, corpus, options, store, name), Training
        )
        clt, source = transcoder(store), "trained"
    held = store.documents(model, corpus, options.heldout, "heldout")
    quality = {
        lang: store.reuse_json(
            NAME,
            f"quality-{lang}.json",
            lambda: _Quality(layer_quality(model, clt, held[lang], store.run.batch_tokens)),
            _Quality,
        ).rows
        for lang in store.languages
    }
    loss = {
        lang: store.reuse_json(
            NAME,
            f"loss-{lang}.json",
            lambda: Replacement(*replacement_loss(model, clt, held[lang], store.run.batch_tokens)),
            Replacement,
        )
        for lang in store.languages
    }
    part = store.part(NAME, TRANSCODER)
    folder = str(part.relative_to(store.folder)) if part is not None else ""
    result = Result(
        asdict(clt.config), source, folder, quality, loss, training, {"split": "heldout", **options.to_dict()}
    )
    return store.keep(NAME, result)


@dataclass
class _Quality:
    rows: list[LayerQuality]


def _train(model, corpus: Corpus, options: Options, store: Store, name: str) -> Training:
    """Train the transcoder (resuming from the run's checkpoint), keep it as a part, log the run."""
    config = CLTConfig(
        model.cfg.n_layers,
        model.cfg.d_model,
        options.features,
        options.per_layer,
        model=name,
        window=options.window,
        layers=options.layers,
    )
    settings = train_settings(options, store)
    docs = [
        doc for lang_docs in store.documents(model, corpus, options.documents, "analysis").values() for doc in lang_docs
    ]
    clt, state = train_clt(model, docs, config, settings, store.part(NAME, "checkpoint"), store.show_progress)
    _keep(store, clt.eval())
    every = max(1, settings.steps // 200)
    log = [
        {"step": i + 1, **entry} for i, entry in enumerate(state.log) if (i + 1) % every == 0 or i + 1 == len(state.log)
    ]
    return Training(state.seconds, settings.steps * settings.batch_tokens, settings.steps, every, log)


def _keep(store: Store, clt: CrossLayerTranscoder) -> CrossLayerTranscoder:
    """The run's transcoder, kept for this session and saved as the part the other slices load."""
    store.parts[NAME, TRANSCODER] = clt
    part = store.part(NAME, TRANSCODER)
    if part is not None:
        distributed.on_main(lambda: clt.save(part))  # under torchrun every rank holds the same transcoder
    return clt


def _loaded(spec: str, model, name: str) -> CrossLayerTranscoder:
    """A transcoder from ``spec`` (ours, featflow's, circuit-tracer's, or SAELens folders one per
    layer: [`load_transcoder`][workbench.clt.checkpoints.load_transcoder] tells which), checked against the model.
    """
    from workbench.clt.checkpoints import load_transcoder

    folders = [Path(part.strip()) for part in spec.split(",") if part.strip()]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise WorkbenchError(
            f"--clt-train-load: no folder {', '.join(missing)}; give a transcoder folder "
            "(ours, featflow's or circuit-tracer's) or SAELens transcoder folders, one per layer."
        )
    clt = load_transcoder(folders, model_name=name, model=model, device=model.cfg.device)
    check_fits(clt, model, name)
    return clt


def figures(result: Result) -> dict[str, go.Figure]:
    out = {"clt_quality": quality_figure(result), "clt_replacement_loss": loss_figure(result)}
    if result.training is not None:
        out["clt_training"] = training_figure(result)
    return out


def verdict(result: Result) -> str:
    """Whether every layer meets the goal (FVU <= 0.2 at L0 <= 64 in every language), and the loss cost."""
    worst = result.worst()
    failing = [q.layer for q in worst if not (q.fvu <= GOAL_FVU and q.l0 <= GOAL_L0)]
    gaps = [r.replacement - r.original for r in result.loss.values()]
    cost = f"Replacing every MLP costs {min(gaps):+.3f} to {max(gaps):+.3f} nats per token across languages."
    fvu, l0 = max(q.fvu for q in worst), max(q.l0 for q in worst)
    if not failing:
        head = f"Every layer meets the goal (FVU <= {GOAL_FVU} at L0 <= {GOAL_L0:.0f}) in every language: worst FVU {fvu:.3f}, worst L0 {l0:.1f}."
    else:
        head = (
            f"Layers {', '.join(map(str, failing))} miss the goal (FVU <= {GOAL_FVU} at L0 <= {GOAL_L0:.0f}) in "
            f"some language; worst FVU {fvu:.3f}, worst L0 {l0:.1f}."
        )
    speed = ""
    if result.training is not None:
        speed = f" Trained on {result.training.rows:,} rows at {result.training.rows_per_second:,.0f} rows/s."
    return f"{head} {cost}{speed}"


def section(result: Result) -> Section:
    c = result.config
    config = CLTConfig(**c)
    reach = (
        "write that layer"
        if config.targets(0) == 1
        else "write that and every later layer"
        if config.window is None
        else f"write that and the next {config.window} layers"
    )
    n_docs = result.settings.get("heldout", "?")
    intro = (
        f"{config.kind[0].upper() + config.kind[1:]} with {c['n_features']:,} JumpReLU features per layer "
        f"({result.source}). Each layer's features read the MLP input (<code>ln2.hook_normalized</code>) and "
        f"{reach}'s MLP output. Measured on "
        f"{n_docs} held-out verses per language (BOS excluded): FVU is the reconstruction's squared error over the "
        "MLP output's variance; L0 the active features per token; dead the share of features never active on that "
        "text. The replacement model swaps every MLP output for the transcoder's reconstruction, computed on its own "
        "residual stream; its next-token loss against the original says what the errors cost downstream."
    )
    return Section(
        "Cross-layer transcoder: reconstruction quality",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table()],
    )
