"""Training a cross-layer transcoder on a model's own activations, streamed.

The rows come in blocks of documents ([`workbench.clt.training.rows`][workbench.clt.training.rows]);
the state of the stream is two numbers (block, row), so a checkpoint (transcoder, optimiser, step,
block, row, log) resumes exactly where an uninterrupted run would be: the block is recomputed from
the model, bit for bit the same.

The sparsity coefficient is ramped linearly from 0 over ``sparsity_warmup`` of the steps (the
CLT paper ramps it over training); Adam, gradient clipping at 1. What makes a transcoder faithful
on a small budget (the levers of ``benchmarks/sweep_clt_gemma.py``), each a setting:

* a skip transcoder's affine skip (``CLTConfig.skip``) is fitted in closed form on the first
  block's rows before the first step ([`workbench.clt.skip`][workbench.clt.skip]) and held fixed;
  the features then learn what it leaves;
* ``reuse`` reads the activations once and takes every pass from memory;
* ``target_l0`` scales lambda per layer after the warm-up, towards that many active features;
* ``tied_init`` starts each encoder as its decoder's transpose.

Speed: only the covered layers are read (the forward stops after the last), encoded and decoded;
the decoders are one batched product per offset; and on a transcoder of at least ``COMPILE_FROM``
parameters the loss is compiled (``torch.compile``: the JumpReLU, penalties and their gradients
fuse into a few passes instead of some thirty over ``[rows, layers, features]``; 1.4x on Gemma 3
270M's per-layer set on 2 cores, after ~20 s of compiling). Where compiling fails (no C compiler)
it runs eagerly, with a warning.

Data-parallel under ``torchrun``: every rank trains the same transcoder on the same stream, and the
ranks split the work of each block and each step ([`workbench.clt.training.parallel`][workbench.clt.training.parallel]).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.clt.skip import fit_skip, moments_of
from workbench.clt.training.loss import DEAD_PENALTY, LossParts, clt_loss, loss_terms
from workbench.clt.training.parallel import combine_gradients, combine_log, share
from workbench.clt.training.rows import Block, block_documents, read_block, stream
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.runs import distributed

if TYPE_CHECKING:
    from workbench.models.model import Model

CHECKPOINT = "checkpoint.pt"
"""The checkpoint's file name in a run's folder."""
COMPILE_FROM = 20_000_000
"""Parameters from which the loss is compiled: smaller transcoders train eagerly (compiling would outlast the gain)."""
L0_GAIN = 0.01
"""How far the L0 controller moves a layer's lambda per step: at most this much in log."""
SKIP_ROWS = 8192
"""Rows per call when the skip's moments are summed."""
SCALE_ROWS = 65_536
"""The most rows of the first block the scales are estimated on (a streamed block is smaller)."""


@dataclass(frozen=True)
class TrainSettings:
    """How a transcoder is trained (the shape is its [`CLTConfig`][workbench.clt.transcoder.CLTConfig]).

    Attributes:
        tokens: Training rows (token positions, all layers each).
        batch_tokens: Rows per step.
        lr: Adam's learning rate.
        sparsity: ``lambda`` of the tanh sparsity term.
        sparsity_warmup: The share of the steps over which ``lambda`` ramps up from 0.
        dead_penalty: The weight of the pull on dead features' pre-activations.
        block_documents: Documents whose activations are shuffled together.
        forward_tokens: Padded tokens per forward batch when reading a block.
        seed: Seeds the transcoder, the document order and the row shuffles.
        checkpoint_every: Steps between checkpoints.
        compile: Compile the loss (None: from ``COMPILE_FROM`` parameters on).
        reuse: Read every document's activations once (half precision) and take each pass from memory.
        target_l0: After the warm-up, scale lambda per layer towards this L0 (None: one fixed lambda).
        tied_init: Start each encoder as its decoder's transpose (columns of the random encoder's norm).
    """

    tokens: int = 200_000
    batch_tokens: int = 512
    lr: float = 1e-3
    sparsity: float = 1.0
    sparsity_warmup: float = 0.5
    dead_penalty: float = DEAD_PENALTY
    block_documents: int = 256
    forward_tokens: int = 2048
    seed: int = 0
    checkpoint_every: int = 50
    compile: bool | None = None
    reuse: bool = False
    target_l0: float | None = None
    tied_init: bool = False

    @property
    def steps(self) -> int:
        """The training steps: ``tokens / batch_tokens``, rounded up."""
        return math.ceil(self.tokens / self.batch_tokens)


@dataclass
class TrainState:
    """Where a run is: the step, the stream's block and row, and every step's log.

    Attributes:
        step: Steps done.
        block: The stream's block.
        row: The next row in that block.
        seconds: Training time, summed over resumed sessions.
        log: Per step: mse, sparsity, dead, l0, lambda.
        lambdas: Per covered layer, the L0 controller's factor on lambda.
    """

    step: int = 0
    block: int = 0
    row: int = 0
    seconds: float = 0.0
    log: list[dict] = field(default_factory=list)
    lambdas: list[float] = field(default_factory=list)


def train_clt(
    model: Model,
    documents: list[Int[torch.Tensor, " pos"]],
    config: CLTConfig,
    settings: TrainSettings,
    folder: Path | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    first: Block | None = None,
) -> tuple[CrossLayerTranscoder, TrainState]:
    """Train (or resume from ``folder``'s checkpoint) a transcoder on ``model``'s activations.

    Args:
        model: The hooked model.
        documents: Token lists, BOS first.
        config: The transcoder's shape (the model's layers and width).
        settings: How to train it.
        folder: Where checkpoints go (None: none are written, none resumed).
        show_progress: Show a progress bar (on the main process).
        on_step: ``on_step(step, log)``, called after each step and its checkpoint.
        first: With ``settings.reuse``, every document's rows already read (``read_block`` of
            block 0): a sweep trains many settings on one read.

    Returns:
        The transcoder and the run's state (its log among it).

    Raises:
        ValueError: A config of another shape than the model, a batch smaller than the world, or a
            checkpoint made with other settings.
    """
    _check(model, config, settings)
    device = model.cfg.device
    clt = CrossLayerTranscoder(config, seed=settings.seed).to(device)
    if clt.W_skip is not None:
        clt.W_skip.requires_grad_(False)  # fitted in closed form at the start: the features learn what it leaves
    optimizer = torch.optim.Adam(clt.parameters(), lr=settings.lr)
    state = _resume(folder, clt, optimizer, config, settings)
    covered = list(config.covered)  # only these layers are read, and the forward stops after the last
    shown = show_progress and distributed.world().is_main
    if first is None or not settings.reuse:
        first = read_block(model, documents, settings, state.block, covered, show_progress=shown)  # scales, batches
    elif state.block:
        first = read_block(model, documents, settings, state.block, covered, first)  # the resumed pass's order
    if state.step == 0:
        _start(clt, first, settings)
        state.lambdas = [1.0] * len(covered)
    batches = stream(model, documents, settings, state, first, covered)
    loss = _loss(clt, settings)
    with tqdm(total=settings.steps, initial=state.step, desc="clt", unit="step", disable=not shown) as bar:
        while state.step < settings.steps:
            entry = _step(clt, optimizer, loss, next(batches), settings, state)
            if folder is not None and (state.step % settings.checkpoint_every == 0 or state.step == settings.steps):
                distributed.on_main(lambda: _save(folder, clt, optimizer, config, settings, state))
            bar.update(1)
            bar.set_postfix(mse=f"{entry['mse']:.3f}", l0=f"{entry['l0']:.1f}")
            if on_step is not None:
                on_step(state.step, entry)
    return clt, state


def _check(model: Model, config: CLTConfig, settings: TrainSettings) -> None:
    """Refuse a config of another shape than the model, and a batch smaller than the world."""
    if config.n_layers != model.cfg.n_layers or config.d_model != model.cfg.d_model:
        raise ValueError(
            f"The CLT has {config.n_layers} layers of width {config.d_model}; the model has "
            f"{model.cfg.n_layers} of {model.cfg.d_model}. Make the CLTConfig from this model."
        )
    world = distributed.world()
    if settings.batch_tokens < world.size:
        raise ValueError(
            f"A batch of {settings.batch_tokens} rows cannot be shared by {world.size} processes; "
            "use at least one row per process."
        )


def _step(
    clt: CrossLayerTranscoder,
    optimizer: torch.optim.Optimizer,
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossParts],
    batch: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    state: TrainState,
) -> dict[str, float]:
    """One step on ``batch`` (this rank's share of it), logged in ``state``; returns the log entry."""
    started = time.perf_counter()
    x, y, weight = share(*batch)
    ramp = min(1.0, (state.step + 1) / max(1, settings.sparsity_warmup * settings.steps))
    sparsity = settings.sparsity * ramp * torch.tensor(state.lambdas, device=x.device)
    parts = loss(x, y, sparsity)
    optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    combine_gradients(clt, weight)
    torch.nn.utils.clip_grad_norm_(clt.parameters(), 1.0)
    optimizer.step()
    state.step += 1
    state.seconds += time.perf_counter() - started
    log, l0_layers = combine_log(parts, weight)
    if settings.target_l0 is not None and ramp >= 1:
        state.lambdas = steer_lambdas(state.lambdas, l0_layers, settings.target_l0)
    entry = {**log, "lambda": settings.sparsity * ramp}
    state.log.append(entry)
    return entry


def steer_lambdas(lambdas: list[float], l0: list[float], target: float) -> list[float]:
    """The L0 controller's next factors: up where a layer fires more than ``target``, down where less.

    Each moves by ``exp(L0_GAIN * clamp((l0 - target) / target, -1, 1))``.
    """
    return [f * math.exp(L0_GAIN * max(-1.0, min(1.0, (a - target) / target))) for f, a in zip(lambdas, l0)]


@torch.no_grad()
def _start(clt: CrossLayerTranscoder, first: Block, settings: TrainSettings) -> None:
    """A new run's start: scales from the first block, the skip fitted on all of it, the encoder tied if asked."""
    clt.set_scales(*first.rows(0, SCALE_ROWS))
    if clt.W_skip is not None:  # in chunks: a reused block is every row, too big to copy at once
        fit_skip(clt, moments_of(first.rows(i, i + SKIP_ROWS) for i in range(0, len(first), SKIP_ROWS)))
    if settings.tied_init:
        for layer in clt.config.covered:
            decoder = clt.W_dec[layer][0]  # [F, d]: to the feature's own layer
            norm = clt.W_enc[layer].norm(dim=0).mean()
            clt.W_enc[layer] = (decoder / decoder.norm(dim=1, keepdim=True).clamp_min(1e-12)).T * norm


def _loss(
    clt: CrossLayerTranscoder, settings: TrainSettings
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossParts]:
    """``loss(x, y, sparsity)`` on the covered layers' rows: [`loss_terms`][workbench.clt.training.loss.loss_terms].

    Compiled where that pays (see the module's docstring).
    """
    size = sum(p.numel() for p in clt.parameters()) * len(clt.config.covered) // clt.config.n_layers
    terms = loss_terms
    if settings.compile or (settings.compile is None and size >= COMPILE_FROM):
        terms = torch.compile(loss_terms, dynamic=False)
    compiled = terms is not loss_terms

    def loss(x: torch.Tensor, y: torch.Tensor, sparsity: torch.Tensor) -> LossParts:
        """The loss, compiled until compiling fails once."""
        nonlocal terms, compiled
        try:
            return clt_loss(clt, x, y, sparsity, dead=settings.dead_penalty, terms=terms)
        except Exception as error:  # noqa: BLE001 - any compiler failure: the eager loss is the same function
            if not compiled:
                raise
            warnings.warn(
                f"Compiling the transcoder's loss failed ({type(error).__name__}: {error}); training "
                "eagerly (slower, same numbers).",
                stacklevel=2,
            )
            terms, compiled = loss_terms, False
            return clt_loss(clt, x, y, sparsity, dead=settings.dead_penalty, terms=terms)

    return loss


def _save(
    folder: Path,
    clt: CrossLayerTranscoder,
    optimizer: torch.optim.Optimizer,
    config: CLTConfig,
    settings: TrainSettings,
    state: TrainState,
) -> None:
    """Write the checkpoint (to a temporary file first, so an interruption leaves the last one whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{CHECKPOINT}.tmp"
    torch.save(
        {
            "config": asdict(config),
            "settings": asdict(settings),
            "clt": clt.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": asdict(state),
        },
        partial,
    )
    partial.replace(folder / CHECKPOINT)


def _resume(
    folder: Path | None,
    clt: CrossLayerTranscoder,
    optimizer: torch.optim.Optimizer,
    config: CLTConfig,
    settings: TrainSettings,
) -> TrainState:
    """Load ``folder``'s checkpoint into ``clt`` and ``optimizer`` (a new state where there is none)."""
    path = None if folder is None else folder / CHECKPOINT
    if path is None or not distributed.from_main(path.exists):
        return TrainState()
    where = clt.b_dec.device if distributed.world().size == 1 else "cpu"  # handed to the other ranks as it is
    saved = distributed.from_main(lambda: torch.load(path, map_location=where, weights_only=True))
    if saved["config"] != asdict(config) or saved["settings"] != asdict(settings):
        raise ValueError(f"{path} is a run with other settings; resume it with those, or use another folder.")
    clt.load_state_dict(saved["clt"])
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["state"])


__all__ = ["L0_GAIN", "TrainSettings", "TrainState", "block_documents", "read_block", "steer_lambdas", "train_clt"]
