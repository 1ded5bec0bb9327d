"""How much an attention pattern changes when one score-side neuron is zeroed, for every row and neuron at once.

The inner loop of the Q/K importances ([`workbench.neurons.qk_importance`][workbench.neurons.qk_importance]).
For a query row r (one position of one head) with pattern ``P`` over its visible keys, zeroing a
neuron c changes the raw scores by

    ``X_j = (f[r, c] + E[g, j, c]) * S[r, j] - p[r, c] * U[g, j, c] - q[r, c] * V[g, j, c]``

(a rescaling of the row by the q/k norm, plus two outer products: the neuron's coordinate and its
rotary partner), and the importance of the row is ``|| softmax(S + X) - P ||^2`` (with a soft cap
the capped scores are compared). ``g`` is the key/value group of the row's head. This is the
paper's softmax difference computed exactly, with ``P'_j = P_j e^{X_j} / sum_i P_i e^{X_i}``
shifted by ``max_j (X_j + log P_j)``: every exponential is at most 1 and the normaliser at least
1, so nothing overflows and nothing needs a second, exact path.

Two backends give the same numbers (a test holds them together):

* ``"c"``: a small C kernel (``kernels/pattern_change.c``), compiled once per machine with the
  system's C compiler and loaded with ``ctypes``: one exponential per entry, vectorised over
  blocks of [`NEURON_BLOCK`][workbench.neurons.pattern_change.NEURON_BLOCK] neurons of a row, only
  the keys a row can see (causal mask and sliding window), rows that do not count skipped. The
  CPU default.
* ``"torch"``: the same formula on tensors, query rows in blocks (each with the keys it can see)
  and neurons in chunks so no temporary exceeds ``chunk_elements`` floats; no host
  synchronisation. Used on GPUs, and on CPUs where no C compiler is found.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import torch
from jaxtyping import Bool, Float

KERNEL_SOURCE = Path(__file__).with_name("kernels") / "pattern_change.c"
"""The C kernel's source."""
COMPILE_FLAGS = ("-O3", "-ffast-math", "-fopenmp", "-march=native", "-shared", "-fPIC")
"""How the kernel is compiled."""
LINK_FLAGS = ("-lmvec", "-lm")
"""What it links: glibc's vector tanh (soft caps), what -ffast-math vectorises tanhf into."""
DEFAULT_CHUNK_ELEMENTS = 1 << 22
"""Floats per ``[batch, head, row, neuron, key]`` temporary of the torch path."""
BACKENDS = ("auto", "c", "torch")
"""How pattern changes are computed: the C kernel, tensors, or ``auto`` (the kernel on CPUs where it builds)."""
NEURON_BLOCK = 32
"""The kernel's CB: neurons per vector block (the neuron axis is padded to a multiple)."""
MASKED_LOG = -1e30
"""Log P of a masked key: finite (the C kernel is compiled with -ffast-math), exp -> 0."""


class RowFactors(TypedDict):
    """The factors of a query row, ``[batch, head, query_pos, neuron]``: ``f`` (or None for 0), ``p``, ``q``."""

    f: Float[torch.Tensor, "batch head query_pos neuron"] | None
    p: Float[torch.Tensor, "batch head query_pos neuron"]
    q: Float[torch.Tensor, "batch head query_pos neuron"]


class KeyFactors(TypedDict):
    """The factors of a key, ``[batch, kv_head, key_pos, neuron]``: ``E`` (or None for 0), ``U``, ``V``."""

    E: Float[torch.Tensor, "batch kv_head key_pos neuron"] | None
    U: Float[torch.Tensor, "batch kv_head key_pos neuron"]
    V: Float[torch.Tensor, "batch kv_head key_pos neuron"]


def log_pattern(pattern: Float[torch.Tensor, "*rows key_pos"]) -> Float[torch.Tensor, "*rows key_pos"]:
    """``log P`` where ``P > 0``, [`MASKED_LOG`][workbench.neurons.pattern_change.MASKED_LOG] where a key is masked.

    Also where a key's weight underflowed. From the scores,
    ``log_softmax(scores).clamp_min(MASKED_LOG)`` is the same, cheaper and exact where ``P``
    underflows.
    """
    return torch.where(pattern > 0, pattern.log(), torch.full_like(pattern, MASKED_LOG))


def row_pattern_change(
    pattern: Float[torch.Tensor, "batch head query_pos key_pos"],
    scores: Float[torch.Tensor, "batch head query_pos key_pos"],
    row: RowFactors,
    key: KeyFactors,
    counted: Bool[torch.Tensor, "batch query_pos"],
    causal: bool = True,
    capped: Float[torch.Tensor, "batch head query_pos key_pos"] | None = None,
    soft_cap: float = 0.0,
    backend: str = "auto",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    log_p: Float[torch.Tensor, "batch head query_pos key_pos"] | None = None,
) -> Float[torch.Tensor, "batch head query_pos neuron"]:
    """``|| softmax(S + X) - P ||^2`` per query row and neuron.

    Args:
        pattern: The attention pattern ``P``.
        scores: The raw scores ``S``, before any soft cap; 0 where masked.
        row: The query rows' factors ``f``, ``p``, ``q``.
        key: The keys' factors ``E``, ``U``, ``V``.
        counted: The rows that count (others give 0 on the C path).
        causal: Whether attention is causal (a row sees no later key).
        capped: With a soft cap, the model's capped scores (0 where masked); by default ``scores``.
        soft_cap: The attention scores' soft cap (0 for none).
        backend: ``auto``, ``c`` or ``torch`` (see the module docstring).
        chunk_elements: Floats per temporary of the torch path.
        log_p: [`log_pattern`][workbench.neurons.pattern_change.log_pattern] of ``pattern``, when the
            caller has it already.

    Returns:
        Each row's pattern change when each neuron is zeroed.

    Raises:
        ValueError: For an unknown backend, or the C backend on a tensor not on the CPU.
        RuntimeError: For the C backend where the kernel does not build.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose from {', '.join(BACKENDS)}.")
    if backend == "c" and pattern.device.type != "cpu":
        raise ValueError(f"The C kernel runs on the CPU; use backend 'torch' (or 'auto') on {pattern.device}.")
    capped = scores if capped is None else capped
    log_p = log_pattern(pattern) if log_p is None else log_p
    if backend == "c" or (backend == "auto" and pattern.device.type == "cpu" and kernel() is not None):
        return _by_kernel(pattern, log_p, scores, capped, row, key, counted, causal, soft_cap)
    return _by_torch(pattern, log_p, scores, capped, row, key, causal, soft_cap, chunk_elements)


def _scale(f: torch.Tensor | None, E: torch.Tensor | None) -> torch.Tensor:
    """The rescaling of the scores, ``f + E``, where one of them may be None (absent)."""
    if f is None:
        if E is None:
            raise ValueError("A row's f and a key's E cannot both be None.")
        return E
    return f if E is None else f + E


def _by_torch(
    pattern: torch.Tensor,
    log_p: torch.Tensor,
    scores: torch.Tensor,
    capped: torch.Tensor,
    row: RowFactors,
    key: KeyFactors,
    causal: bool,
    soft_cap: float,
    chunk_elements: int,
) -> torch.Tensor:
    b, n_heads, n_q, n_k = pattern.shape
    n_neurons = row["p"].shape[-1]
    group = n_heads // key["U"].shape[1]
    E = None if key["E"] is None else key["E"].repeat_interleave(group, 1)
    U, V = key["U"].repeat_interleave(group, 1), key["V"].repeat_interleave(group, 1)
    out = torch.zeros(b, n_heads, n_q, n_neurons, dtype=torch.float32, device=pattern.device)
    max_rows = max(1, chunk_elements // (b * n_heads * n_k))
    for rows, keys in row_blocks(n_q, n_k, max_rows, causal):
        width = max(1, min(n_neurons, chunk_elements // (b * n_heads * (rows.stop - rows.start) * keys.stop)))
        for start in range(0, n_neurons, width):
            dims = slice(start, start + width)
            f = None if row["f"] is None else row["f"][:, :, rows, dims, None]
            p, q = row["p"][:, :, rows, dims, None], row["q"][:, :, rows, dims, None]
            e = None if E is None else E[:, :, None, keys, dims].transpose(-1, -2)
            u, v = U[:, :, None, keys, dims].transpose(-1, -2), V[:, :, None, keys, dims].transpose(-1, -2)
            s = scores[:, :, rows, None, keys]
            x = _scale(f, e) * s - p * u - q * v
            if soft_cap > 0:
                x = soft_cap * torch.tanh((s + x) / soft_cap) - capped[:, :, rows, None, keys]
            y = x + log_p[:, :, rows, None, keys]
            w = (y - y.amax(-1, keepdim=True)).exp_()
            w = w.div_(w.sum(-1, keepdim=True)).sub_(pattern[:, :, rows, None, keys])
            out[:, :, rows, dims] = w.square_().sum(-1)
    return out


def row_blocks(n_q: int, n_k: int, max_rows: int, causal: bool) -> list[tuple[slice, slice]]:
    """Query row blocks, each with the keys it can see.

    Causal attention never looks ahead, so splitting the rows into (at least) 4 blocks skips most
    of the masked upper triangle.

    Args:
        n_q: Query rows.
        n_k: Keys (more than ``n_q`` with a cache: the first queries follow them).
        max_rows: The most rows in one block.
        causal: Whether attention is causal.

    Returns:
        ``(rows, keys)`` slices, one pair per block.
    """
    size = max(1, min(max_rows, -(-n_q // 4) if causal else n_q))
    offset = n_k - n_q  # keys before the first query (0 without a cache)
    return [
        (slice(r, min(n_q, r + size)), slice(0, offset + min(n_q, r + size) if causal else n_k))
        for r in range(0, n_q, size)
    ]


def _by_kernel(
    pattern: torch.Tensor,
    log_p: torch.Tensor,
    scores: torch.Tensor,
    capped: torch.Tensor,
    row: RowFactors,
    key: KeyFactors,
    counted: torch.Tensor,
    causal: bool,
    soft_cap: float,
) -> torch.Tensor:
    run = kernel()
    if run is None:
        raise RuntimeError("The C kernel could not be built here (no C compiler?); use backend='torch'.")
    b, n_heads, n_q, n_k = pattern.shape
    n_kv, n_neurons = key["U"].shape[1], row["p"].shape[-1]
    heads = torch.arange(n_heads) // (n_heads // n_kv)
    group = (torch.arange(b)[:, None] * n_kv + heads[None, :]).repeat_interleave(n_q, 1).reshape(-1)
    visible = torch.arange(1, n_q + 1) + (n_k - n_q) if causal else torch.full((n_q,), n_k)
    n_keys = (visible[None, :] * counted.cpu().bool()).repeat_interleave(n_heads, 0).reshape(-1)
    first = (log_p > MASKED_LOG).int().argmax(-1).reshape(-1).cpu()  # first visible key: sliding windows start later
    indices = [t.contiguous() for t in (group, first, n_keys)]  # kept alive for the call
    args = [t.float().contiguous() for t in (pattern, log_p, scores, capped)]
    padded = -(-n_neurons // NEURON_BLOCK) * NEURON_BLOCK
    rows = [_padded(row["f"], padded), _padded(row["p"], padded), _padded(row["q"], padded)]
    keys = [_padded(key["E"], padded), _padded(key["U"], padded), _padded(key["V"], padded)]
    out = torch.empty(b, n_heads, n_q, padded, dtype=torch.float32)
    pointers = [ctypes.c_void_p(t.data_ptr() if t is not None else 0) for t in (*args, *rows, *keys)]
    run(
        *pointers,
        *(ctypes.c_void_p(t.data_ptr()) for t in indices),
        ctypes.c_float(soft_cap),
        ctypes.c_int64(b * n_heads * n_q),
        ctypes.c_int64(padded),
        ctypes.c_int64(n_k),
        ctypes.c_int(torch.get_num_threads()),
        ctypes.c_void_p(out.data_ptr()),
    )
    return out[..., :n_neurons]


def _padded(t: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """``t`` as contiguous float32 with its last (neuron) axis zero-padded to ``size``."""
    if t is None:
        return None
    t = t.float()
    return torch.nn.functional.pad(t, (0, size - t.shape[-1])).contiguous() if t.shape[-1] < size else t.contiguous()


@functools.cache
def kernel() -> Callable[..., None] | None:
    """The compiled C kernel, built on first use into the workbench cache.

    Returns:
        The kernel's function, or None where no C compiler works: then the torch backend is used,
        with one warning.
    """
    try:
        function = ctypes.CDLL(str(_build())).pattern_change
    except (OSError, subprocess.CalledProcessError) as error:
        warnings.warn(f"Q/K importances use the slower torch path: the C kernel did not build ({error}).", stacklevel=2)
        return None
    function.restype = None
    return function


def _build() -> Path:
    """Compile the kernel once per source, flags and machine; reuse the shared library after."""
    from workbench.models.catalog import cache_root

    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    source = KERNEL_SOURCE.read_bytes()
    flags = " ".join(COMPILE_FLAGS + LINK_FLAGS)
    key = hashlib.sha256(source + flags.encode() + _machine().encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"pattern_change-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        command = [compiler, *COMPILE_FLAGS, "-o", str(partial), str(KERNEL_SOURCE), *LINK_FLAGS]
        subprocess.run(command, check=True, capture_output=True)
        partial.replace(target)  # atomic: a concurrent build never leaves half a library
    return target


def _machine() -> str:
    """What ``-march=native`` depends on: the CPU's model and flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return os.uname().machine
    return os.uname().machine + "".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
