"""The clt-train slice: train a cross-layer transcoder on the run's languages (or load one), then measure it.

Per layer and language, on held-out verses: FVU, L0, dead features, and the replacement model's
next-token loss against the original model's. Training streams the model's own activations
([`workbench.clt.training.train.train_clt`][workbench.clt.training.train.train_clt]) and checkpoints into the run's
parts, so an interrupted run resumes where it stopped; the finished transcoder is a part too
([`workbench.clt.runs.transcoder`][workbench.clt.runs.transcoder]), which the other clt slices load.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import asdict

import plotly.graph_objects as go

from workbench.analyses.clt_train.options import Options
from workbench.analyses.clt_train.plots import loss_figure, quality_figure, splice_figure, training_figure
from workbench.analyses.clt_train.result import Result
from workbench.clt.runs.measures import loss_per_language, quality_per_language
from workbench.clt.runs.transcoder import (
    SPLICED,
    Splice,
    Training,
    base_transcoder,
    keep_transcoder,
    load_given,
    transcoder,
    transcoder_folder,
)
from workbench.clt.training.splice import SpliceSettings, finetune_spliced
from workbench.clt.training.train import TrainSettings, train_clt
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.data.corpus import Corpus
from workbench.models.model import Model, model_source
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS
GOAL_FVU, GOAL_L0 = 0.2, 64.0  # the goal on the default zoo model


def train_settings(options: Options, store: Store) -> TrainSettings:
    """The training schedule of ``options``, with the run's forward batch size and seed."""
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
        reuse=options.reuse,
        target_l0=options.target_l0,
        tied_init=options.tied_init,
    )


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Train (or resume, or load) the transcoder, then measure it on held-out verses."""
    name = model_source(model).get("name", store.run.model)
    docs = functools.cache(lambda: _training_documents(model, corpus, options, store))  # read once, if at all
    training = None
    if options.load:
        clt, source = keep_transcoder(store, load_given(options.load, model, name, options.load_variant)), options.load
    else:
        training = store.reuse_json(NAME, "training.json", lambda: _train(model, options, store, name, docs), Training)
        clt, source = base_transcoder(store), "trained"
    splice = None
    if options.splice_steps:
        splice = store.reuse_json(NAME, "splice.json", lambda: _splice(model, options, store, clt, docs()), Splice)
        clt = transcoder(store)
    held = store.documents(model, corpus, options.heldout, "heldout")
    quality = quality_per_language(store, NAME, lambda lang: f"quality-{lang}.json", model, clt, held)
    loss = loss_per_language(store, NAME, lambda lang: f"loss-{lang}.json", model, clt, held)
    settings = {"split": "heldout", **options.to_dict()}
    result = Result(asdict(clt.config), source, transcoder_folder(store), quality, loss, training, settings, splice)
    return store.keep(NAME, result)


def _training_documents(model: Model, corpus: Corpus, options: Options, store: Store) -> list:
    """The training verses of every language, one list (the analysis split)."""
    docs = store.documents(model, corpus, options.documents, "analysis")
    return [doc for lang_docs in docs.values() for doc in lang_docs]


def _train(model: Model, options: Options, store: Store, name: str, docs: Callable[[], list]) -> Training:
    """Train the transcoder (resuming from the run's checkpoint), keep it as a part, log the run."""
    config = CLTConfig(
        model.cfg.n_layers,
        model.cfg.d_model,
        options.features,
        options.per_layer,
        model=name,
        window=options.window,
        layers=options.layers,
        skip=options.skip,
    )
    settings = train_settings(options, store)
    clt, state = train_clt(model, docs(), config, settings, store.part(NAME, "checkpoint"), store.show_progress)
    keep_transcoder(store, clt.eval())
    return Training.of(state, settings)


def _splice(model: Model, options: Options, store: Store, base: CrossLayerTranscoder, docs: list) -> Splice:
    """Fine-tune a copy of ``base`` through the spliced model, keep it as the run's transcoder, log it.

    Always from ``base`` (the trained or loaded one), so a fine-tune cut short is run again whole.
    """
    settings = SpliceSettings(steps=options.splice_steps, lr=options.splice_lr, seed=store.run.seed)
    tuned = copy.deepcopy(base)
    started = time.perf_counter()
    log = finetune_spliced(model, tuned, docs, settings, store.show_progress)
    keep_transcoder(store, tuned, SPLICED)
    return Splice(time.perf_counter() - started, settings.steps, settings.lr, log)


def figures(result: Result) -> dict[str, go.Figure]:
    """The quality and loss figures, and the training and spliced fine-tune curves where the run made them."""
    out = {"clt_quality": quality_figure(result), "clt_replacement_loss": loss_figure(result)}
    if result.training is not None:
        out["clt_training"] = training_figure(result)
    if result.splice is not None:
        out["clt_splice"] = splice_figure(result)
    return out


def verdict(result: Result) -> str:
    """Whether every layer meets the goal (FVU <= 0.2 at L0 <= 64 in every language), and the loss cost."""
    worst = result.worst()
    failing = [q.layer for q in worst if not (q.fvu <= GOAL_FVU and q.l0 <= GOAL_L0)]
    gaps = [r.replacement - r.original for r in result.loss.values()]
    cost = f"Replacing every MLP costs {min(gaps):+.3f} to {max(gaps):+.3f} nats per token across languages"
    with_bos = [r.with_bos - r.original for r in result.loss.values() if r.with_bos == r.with_bos]  # NaN: not measured
    cost += f" ({min(with_bos):+.3f} to {max(with_bos):+.3f} with BOS replaced too)." if with_bos else "."
    fvu, l0 = max(q.fvu for q in worst), max(q.l0 for q in worst)
    goal = f"(FVU <= {GOAL_FVU} at L0 <= {GOAL_L0:.0f})"
    if not failing:
        head = f"Every layer meets the goal {goal} in every language: worst FVU {fvu:.3f}, worst L0 {l0:.1f}."
    else:
        head = (
            f"Layers {', '.join(map(str, failing))} miss the goal {goal} in "
            f"some language; worst FVU {fvu:.3f}, worst L0 {l0:.1f}."
        )
    speed = ""
    if result.training is not None:
        speed = f" Trained on {result.training.rows:,} rows at {result.training.rows_per_second:,.0f} rows/s."
    if result.splice is not None and result.splice.log:
        first, last = result.splice.log[0], result.splice.log[-1]
        speed += (
            f" Then the decoders were fine-tuned through the spliced model for {result.splice.steps} steps "
            f"({result.splice.seconds / 60:.1f} min): KL from the model {first['kl']:.3f} -> {last['kl']:.3f} nats per "
            "token on the training batches (the numbers above are after it)."
        )
    return f"{head} {cost}{speed}"


def section(result: Result) -> Section:
    """The report's section: what was measured, how, and the verdict."""
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
        "residual stream, at every position but BOS (the transcoder is neither trained nor read there; the verdict "
        "also gives the cost with BOS replaced); its next-token loss against the original says what the errors cost "
        "downstream."
    )
    return Section(
        "Cross-layer transcoder: reconstruction quality",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table()],
    )
