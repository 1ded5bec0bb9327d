"""Training a cross-layer transcoder on a model's own activations, streamed.

Documents are read in *blocks*: block ``k`` is the next ``block_documents`` of a seeded
permutation of the documents (a new permutation each pass). A block's MLP inputs and outputs
(:func:`~workbench.clt.activations.mlp_io`, BOS and padding dropped) are shuffled with a seed of
their own and consumed in batches of ``batch_tokens`` rows; then the next block is read. Memory is
one block's activations, never the corpus's, and the state of the stream is two numbers (block,
row), so a checkpoint (transcoder, optimiser, step, block, row, log) resumes exactly where an
uninterrupted run would be: the block is recomputed from the model, bit for bit the same.

The sparsity coefficient is ramped linearly from 0 over ``sparsity_warmup`` of the steps (the
CLT paper ramps it over training); Adam, gradient clipping at 1.

Speed: only the covered layers are read (the forward stops after the last), encoded and decoded;
the decoders are one batched product per offset; and on a transcoder of at least ``COMPILE_FROM``
parameters the loss is compiled
(``torch.compile``: the JumpReLU, penalties and their gradients fuse into a few passes instead of
some thirty over ``[rows, layers, features]``; 1.4x on Gemma 3 270M's per-layer set on 2 cores,
after ~20 s of compiling). Where compiling fails (no C compiler) it runs eagerly, with a warning.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from workbench.clt.activations import document_rows
from workbench.clt.transcoder import DEAD_PENALTY, CLTConfig, CrossLayerTranscoder, LossParts, clt_loss, loss_terms

CHECKPOINT = "checkpoint.pt"
COMPILE_FROM = 20_000_000  # parameters: smaller transcoders train eagerly (compiling would outlast the gain)


@dataclass(frozen=True)
class TrainSettings:
    """How a transcoder is trained (the shape is its :class:`CLTConfig`)."""

    tokens: int = 200_000  # training rows (token positions, all layers each)
    batch_tokens: int = 512
    lr: float = 1e-3
    sparsity: float = 1.0  # lambda of the tanh sparsity term
    sparsity_warmup: float = 0.5  # share of the steps over which lambda ramps up from 0
    dead_penalty: float = DEAD_PENALTY  # weight of the pull on dead features' pre-activations
    block_documents: int = 256  # documents whose activations are shuffled together
    forward_tokens: int = 2048  # padded tokens per forward batch when reading a block
    seed: int = 0
    checkpoint_every: int = 50
    compile: bool | None = None  # compile the loss (None: from COMPILE_FROM parameters on)

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.batch_tokens)


@dataclass
class TrainState:
    """Where a run is: the step, the stream's block and row, and every step's log."""

    step: int = 0
    block: int = 0
    row: int = 0
    seconds: float = 0.0  # training time, summed over resumed sessions
    log: list[dict] = field(default_factory=list)  # per step: mse, sparsity, dead, l0, lambda


def block_documents(n_documents: int, size: int, block: int, seed: int) -> list[int]:
    """The document indices of block ``block``: consecutive slices of one seeded permutation per pass."""
    per_pass = math.ceil(n_documents / size)
    epoch, k = divmod(block, per_pass)
    order = torch.randperm(n_documents, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return order[k * size : (k + 1) * size]


def read_block(
    model, documents: list[torch.Tensor], settings: TrainSettings, block: int, layers: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A block's ``(inputs, outputs)`` rows, ``[rows, L, d]`` (or of ``layers`` only), shuffled
    (BOS and padding dropped)."""
    chosen = block_documents(len(documents), settings.block_documents, block, settings.seed)
    docs = [documents[i] for i in chosen]
    inputs, outputs = zip(*document_rows(model, docs, settings.forward_tokens, layers))
    x, y = torch.cat(inputs), torch.cat(outputs)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(settings.seed * 1_000_003 + block + 1))
    return x[order.to(x.device)], y[order.to(y.device)]


def stream(model, documents, settings: TrainSettings, state: TrainState,
           first: tuple[torch.Tensor, torch.Tensor] | None = None,
           layers: list[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Batches (of ``layers`` only, if given) from ``state.block``/``state.row`` on, advancing the
    state as it yields; ``first``: block ``state.block`` when it is already read."""
    while True:
        x, y = first if first is not None else read_block(model, documents, settings, state.block, layers)
        first = None
        while state.row + settings.batch_tokens <= len(x):
            rows = slice(state.row, state.row + settings.batch_tokens)
            state.row += settings.batch_tokens
            yield x[rows], y[rows]
        state.block, state.row = state.block + 1, 0


def train_clt(model, documents: list[torch.Tensor], config: CLTConfig, settings: TrainSettings,
              folder: Path | None = None, show_progress: bool = True,
              on_step: Callable[[int, dict], None] | None = None) -> tuple[CrossLayerTranscoder, TrainState]:  # fmt: skip
    """Train (or resume from ``folder``'s checkpoint) a transcoder of ``config`` on ``model``'s
    activations over ``documents`` (token lists, BOS first). ``on_step(step, log)`` is called
    after each step and its checkpoint."""
    if config.n_layers != model.cfg.n_layers or config.d_model != model.cfg.d_model:
        raise ValueError(f"The CLT has {config.n_layers} layers of width {config.d_model}; the model has "
                         f"{model.cfg.n_layers} of {model.cfg.d_model}. Make the CLTConfig from this model.")  # fmt: skip
    device = model.cfg.device
    clt = CrossLayerTranscoder(config, seed=settings.seed).to(device)
    optimizer = torch.optim.Adam(clt.parameters(), lr=settings.lr)
    state = _resume(folder, clt, optimizer, config, settings)
    covered = list(config.covered)  # only these layers are read, and the forward stops after the last
    first = read_block(model, documents, settings, state.block, covered)  # read once: scales (new run) and batches
    if state.step == 0:
        clt.set_scales(*first)
    batches = stream(model, documents, settings, state, first, covered)
    loss = _loss(clt, settings)
    with tqdm(total=settings.steps, initial=state.step, desc="clt", unit="step", disable=not show_progress) as bar:
        while state.step < settings.steps:
            started = time.perf_counter()
            x, y = next(batches)
            ramp = min(1.0, (state.step + 1) / max(1, settings.sparsity_warmup * settings.steps))
            parts = loss(x, y, settings.sparsity * ramp)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            torch.nn.utils.clip_grad_norm_(clt.parameters(), 1.0)
            optimizer.step()
            state.step += 1
            state.seconds += time.perf_counter() - started
            entry = {"mse": parts.mse, "sparsity": parts.sparsity, "dead": parts.dead, "l0": parts.l0,
                     "lambda": settings.sparsity * ramp}  # fmt: skip
            state.log.append(entry)
            if folder is not None and (state.step % settings.checkpoint_every == 0 or state.step == settings.steps):
                _save(folder, clt, optimizer, config, settings, state)
            bar.update(1)
            bar.set_postfix(mse=f"{parts.mse:.3f}", l0=f"{parts.l0:.1f}")
            if on_step is not None:
                on_step(state.step, entry)
    return clt, state


def _loss(clt: CrossLayerTranscoder, settings: TrainSettings) -> Callable[..., LossParts]:
    """``loss(x, y, sparsity)`` on the covered layers' rows ``[rows, n, d]``: :func:`loss_terms`,
    compiled where that pays (see the module's docstring)."""
    size = sum(p.numel() for p in clt.parameters()) * len(clt.config.covered) // clt.config.n_layers
    terms = loss_terms
    if settings.compile or (settings.compile is None and size >= COMPILE_FROM):
        terms = torch.compile(loss_terms, dynamic=False)
    compiled = terms is not loss_terms

    def loss(x: torch.Tensor, y: torch.Tensor, sparsity: float) -> LossParts:
        nonlocal terms, compiled
        try:
            return clt_loss(clt, x, y, sparsity, dead=settings.dead_penalty, terms=terms)
        except Exception as error:  # noqa: BLE001 - any compiler failure: the eager loss is the same function
            if not compiled:
                raise
            warnings.warn(f"Compiling the transcoder's loss failed ({type(error).__name__}: {error}); training "
                          "eagerly (slower, same numbers).", stacklevel=2)  # fmt: skip
            terms, compiled = loss_terms, False
            return clt_loss(clt, x, y, sparsity, dead=settings.dead_penalty, terms=terms)

    return loss


def _save(folder: Path, clt, optimizer, config: CLTConfig, settings: TrainSettings, state: TrainState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{CHECKPOINT}.tmp"
    torch.save({"config": asdict(config), "settings": asdict(settings), "clt": clt.state_dict(),
                "optimizer": optimizer.state_dict(), "state": asdict(state)}, partial)  # fmt: skip
    partial.replace(folder / CHECKPOINT)


def _resume(folder: Path | None, clt, optimizer, config: CLTConfig, settings: TrainSettings) -> TrainState:
    path = None if folder is None else folder / CHECKPOINT
    if path is None or not path.exists():
        return TrainState()
    saved = torch.load(path, map_location=clt.b_dec.device, weights_only=True)
    if saved["config"] != asdict(config) or saved["settings"] != asdict(settings):
        raise ValueError(f"{path} is a run with other settings; resume it with those, or use another folder.")
    clt.load_state_dict(saved["clt"])
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["state"])


__all__ = ["TrainSettings", "TrainState", "block_documents", "read_block", "train_clt"]
