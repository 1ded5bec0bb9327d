"""Training a cross-layer transcoder on a model's own activations, streamed.

Documents are read in *blocks*: block ``k`` is the next ``block_documents`` of a seeded
permutation of the documents (a new permutation each pass). A block's MLP inputs and outputs
([`mlp_io`][workbench.clt.activations.mlp_io], BOS and padding dropped) are shuffled with a seed of
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

Data-parallel under ``torchrun`` ([`workbench.runs.distributed`][workbench.runs.distributed]): every rank trains the same
transcoder on the same stream, and the ranks split the work of each block and each step.

* Reading a block (the model's forward, the costly part): its documents in the order one
  process's length-sorted batches read them, rank ``r`` taking every ``W``-th from the ``r``-th
  (so the ranks' token counts are near equal); the rows are gathered back into that order on every
  rank, then shuffled with the same seed. Every rank holds the block one process would have (its
  numbers within float rounding: a document's forward ran in another padded batch), and so the
  same scales from the first block.
* A step: every rank takes the same batch of ``batch_tokens`` rows and computes the loss on its
  own contiguous share (``n_r`` rows, shares differing by at most one). The loss terms are means
  over rows, so the batch's gradient is the shares' gradients weighted by ``n_r / batch_tokens``,
  summed over ranks: one all-reduce of the flattened gradients before clipping and Adam, so the
  ranks' parameters stay identical. The log's mse, sparsity, dead and l0 are combined the same way.
* Rank 0 alone writes checkpoints and shows progress; a resume reads rank 0's checkpoint on every
  rank. The stream's state (block, row) does not depend on the world size, so a checkpoint resumes
  with any number of processes.

Equal means: a run of ``W`` processes gives one process's transcoder and log within float
rounding (sums in another order, activations computed in other batches), not bit for bit; a world of
one runs exactly the one-process code. The tests hold two gloo processes to one process.
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
from workbench.runs import distributed

CHECKPOINT = "checkpoint.pt"
COMPILE_FROM = 20_000_000  # parameters: smaller transcoders train eagerly (compiling would outlast the gain)


@dataclass(frozen=True)
class TrainSettings:
    """How a transcoder is trained (the shape is its [`CLTConfig`][workbench.clt.transcoder.CLTConfig])."""

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
    (BOS and padding dropped).
    """
    chosen = block_documents(len(documents), settings.block_documents, block, settings.seed)
    docs = [documents[i] for i in chosen]
    if distributed.world().size == 1:
        inputs, outputs = zip(*document_rows(model, docs, settings.forward_tokens, layers))
        x, y = torch.cat(inputs), torch.cat(outputs)
    else:
        x, y = _read_shared(model, docs, settings.forward_tokens, layers)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(settings.seed * 1_000_003 + block + 1))
    return x[order.to(x.device)], y[order.to(y.device)]


def _read_shared(
    model, docs: list[torch.Tensor], forward_tokens: int, layers: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``docs``' rows in one process's order (its batches read the documents longest first, ties
    in block order), each rank reading every ``W``-th document of that order and the rows gathered
    back on every rank.
    """
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))  # plan_batches' order (a stable sort)
    w = distributed.world()
    shares = [order[rank :: w.size] for rank in range(w.size)]
    counts = [[max(len(docs[i]) - 1, 0) for i in share] for share in shares]  # rows: BOS dropped
    mine = [docs[i] for i in shares[w.rank]]  # longest first already: batched in this order
    # a rank without documents (a block smaller than the world) reads two tokens for the rows'
    # shape and dtype, and keeps none of them
    read = document_rows(model, mine or [docs[order[0]][:2]], forward_tokens, layers)
    inputs, outputs = (torch.cat(part) for part in zip(*read))
    if not mine:
        inputs, outputs = inputs[:0], outputs[:0]
    by_document: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    xs, ys = (_gather_rows(part, [sum(c) for c in counts]) for part in (inputs, outputs))
    for share, count, x, y in zip(shares, counts, xs, ys):
        by_document.update(zip(share, zip(x.split(count), y.split(count))))
    return torch.cat([by_document[i][0] for i in order]), torch.cat([by_document[i][1] for i in order])


def _gather_rows(rows: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    """Every rank's ``rows`` (rank ``r`` holding ``counts[r]`` of them), in rank order, on every
    rank: one tensor collective (padded to the longest), not a pickled object per rank.
    """
    longest = max(counts)
    padded = torch.cat([rows, rows.new_zeros(longest - len(rows), *rows.shape[1:])])
    parts = [torch.empty_like(padded) for _ in counts]
    torch.distributed.all_gather(parts, padded)
    return [part[:count] for part, count in zip(parts, counts)]


def stream(
    model,
    documents,
    settings: TrainSettings,
    state: TrainState,
    first: tuple[torch.Tensor, torch.Tensor] | None = None,
    layers: list[int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (of ``layers`` only, if given) from ``state.block``/``state.row`` on, advancing the
    state as it yields; ``first``: block ``state.block`` when it is already read.
    """
    while True:
        x, y = first if first is not None else read_block(model, documents, settings, state.block, layers)
        first = None
        while state.row + settings.batch_tokens <= len(x):
            rows = slice(state.row, state.row + settings.batch_tokens)
            state.row += settings.batch_tokens
            yield x[rows], y[rows]
        state.block, state.row = state.block + 1, 0


def train_clt(
    model,
    documents: list[torch.Tensor],
    config: CLTConfig,
    settings: TrainSettings,
    folder: Path | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> tuple[CrossLayerTranscoder, TrainState]:
    """Train (or resume from ``folder``'s checkpoint) a transcoder of ``config`` on ``model``'s
    activations over ``documents`` (token lists, BOS first). ``on_step(step, log)`` is called
    after each step and its checkpoint.
    """
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
    shown = show_progress and world.is_main
    with tqdm(total=settings.steps, initial=state.step, desc="clt", unit="step", disable=not shown) as bar:
        while state.step < settings.steps:
            started = time.perf_counter()
            x, y = next(batches)
            x, y, weight = _share(x, y)
            ramp = min(1.0, (state.step + 1) / max(1, settings.sparsity_warmup * settings.steps))
            parts = loss(x, y, settings.sparsity * ramp)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            _combine_gradients(clt, weight)
            torch.nn.utils.clip_grad_norm_(clt.parameters(), 1.0)
            optimizer.step()
            state.step += 1
            state.seconds += time.perf_counter() - started
            entry = {**_combine_log(parts, weight), "lambda": settings.sparsity * ramp}
            state.log.append(entry)
            if folder is not None and (state.step % settings.checkpoint_every == 0 or state.step == settings.steps):
                distributed.on_main(lambda: _save(folder, clt, optimizer, config, settings, state))
            bar.update(1)
            bar.set_postfix(mse=f"{entry['mse']:.3f}", l0=f"{entry['l0']:.1f}")
            if on_step is not None:
                on_step(state.step, entry)
    return clt, state


def _share(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """This rank's contiguous share of a batch's rows and its weight (its rows over the batch's):
    the whole batch, weight 1, in a world of one.
    """
    w = distributed.world()
    if w.size == 1:
        return x, y, 1.0
    start, end = w.rank * len(x) // w.size, (w.rank + 1) * len(x) // w.size
    return x[start:end], y[start:end], (end - start) / len(x)


def _combine_gradients(clt: CrossLayerTranscoder, weight: float) -> None:
    """Replace each rank's gradients by the batch's: the shares' gradients of their mean losses,
    weighted by their share of the rows and summed over ranks (one all-reduce of them all,
    flattened). The same parameters have gradients on every rank (those the loss reaches).
    """
    if distributed.world().size == 1:
        return
    grads = [p.grad for p in clt.parameters() if p.grad is not None]
    flat = distributed.all_reduce(torch.cat([g.flatten() for g in grads]) * weight)
    for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(part.view_as(grad))


def _combine_log(parts: LossParts, weight: float) -> dict[str, float]:
    """The step's log entry (mse, sparsity, dead, l0: means over rows) over the whole batch."""
    entry = {"mse": parts.mse, "sparsity": parts.sparsity, "dead": parts.dead, "l0": parts.l0}
    if distributed.world().size == 1:
        return entry
    summed = distributed.all_reduce(torch.tensor(list(entry.values()), dtype=torch.float64) * weight)
    return dict(zip(entry, summed.tolist()))


def _loss(clt: CrossLayerTranscoder, settings: TrainSettings) -> Callable[..., LossParts]:
    """``loss(x, y, sparsity)`` on the covered layers' rows ``[rows, n, d]``: [`loss_terms`][workbench.clt.transcoder.loss_terms],
    compiled where that pays (see the module's docstring).
    """
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
            warnings.warn(
                f"Compiling the transcoder's loss failed ({type(error).__name__}: {error}); training "
                "eagerly (slower, same numbers).",
                stacklevel=2,
            )
            terms, compiled = loss_terms, False
            return clt_loss(clt, x, y, sparsity, dead=settings.dead_penalty, terms=terms)

    return loss


def _save(folder: Path, clt, optimizer, config: CLTConfig, settings: TrainSettings, state: TrainState) -> None:
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


def _resume(folder: Path | None, clt, optimizer, config: CLTConfig, settings: TrainSettings) -> TrainState:
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


__all__ = ["TrainSettings", "TrainState", "block_documents", "read_block", "train_clt"]
