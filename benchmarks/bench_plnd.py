"""PLND benchmark: importance throughput per structure as a ratio to a plain forward pass over
the same tokens (measured in the same run), for documents of 64 to 1024 tokens in several
languages (scripts differ in token statistics), the speed-up over the literal sequential method,
and peak memory.

* forward: the blocks without the unembedding (PLND never computes it), same batches;
* PLND per structure (``ffn``, ``attn_q``, ``attn_k``, ``attn_v`` + ``attn_o``) and all of them in
  one pass (``all``), with the Q/K backend of ``--backend`` (``auto``: the C kernel on CPUs);
  ``--compare-torch`` adds ``all`` on the torch backend;
* literal (first language only): zero one neuron in a copy of its sublayer, rerun the sublayer,
  measure (``workbench.neurons.plnd_reference``); timed on a sample of neurons of one middle layer per
  structure on one document and extrapolated to every neuron of every layer.

Times are medians of ``--repeats`` runs; memory is the process's peak resident size (and, on a
GPU, the peak memory torch allocated there).

Usage: ``python benchmarks/bench_plnd.py [--device cpu|cuda] [--languages de,ru,zh]
[--lengths 64,256,1024] [--tokens 2048] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_forward import PeakRSS, add_device_argument, synchronize  # noqa: E402

from workbench.data.batching import iter_batches, pad_id_of  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.neurons.importance import iter_importance  # noqa: E402
from workbench.neurons.plnd_reference import attention_reference, ffn_reference  # noqa: E402
from workbench.neurons.sets import ATTENTION, structure_size  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

MODES = {
    "ffn": ("ffn",),
    "attn_q": ("attn_q",),
    "attn_k": ("attn_k",),
    "attn_vo": ("attn_v", "attn_o"),
    "all": ("ffn", *ATTENTION),
}
LITERAL_SAMPLE = {"ffn": 16, "attn_q": 8, "attn_k": 8, "attn_v": 8, "attn_o": 8}


def documents(model, length: int, total_tokens: int, language: str = "de") -> list[torch.Tensor]:
    """Bible text in ``language`` cut into documents of exactly ``length`` tokens (BOS first), on
    the CPU like ``workbench.data.batching.tokenize``'s (batches are moved to the model's device)."""
    corpus = BibleCorpus()
    ids = corpus.sample_ids([language], 600, "analysis", seed=0)
    stream = model.to_tokens(" ".join(corpus.parallel([language], ids)[language]["text"]), prepend_bos=False)[0].cpu()
    n_docs = max(1, total_tokens // length)
    if len(stream) < n_docs * (length - 1):
        raise RuntimeError("not enough text for the requested documents")
    bos = torch.tensor([model.tokenizer.bos_token_id])
    return [torch.cat([bos, stream[i * (length - 1) : (i + 1) * (length - 1)]]) for i in range(n_docs)]


@torch.inference_mode()
def blocks_only(model, tokens, batch_tokens: int) -> None:
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, next(model.parameters()).device):
        model(batch.tokens, stop_at_layer=model.cfg.n_layers)


def plnd(model, tokens, structures, batch_tokens: int, backend: str = "auto") -> None:
    for _ in iter_importance(model, tokens, structures, batch_tokens=batch_tokens, backend=backend):
        pass


def timed(fn, peak: PeakRSS, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` runs, and peak resident memory (GiB, model weights included)."""
    times = []
    with peak.measure():
        for _ in range(repeats):
            synchronize(peak.device)
            start = time.perf_counter()
            fn()
            synchronize(peak.device)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], peak.gib if peak.gpu_gib is None else peak.gpu_gib


def _reference(model, doc: torch.Tensor, layer: int, structure: str, n: int) -> float:
    doc = doc.to(next(model.parameters()).device)
    synchronize(doc.device)
    start = time.perf_counter()
    if structure == "ffn":
        ffn_reference(model, doc[None], layer, range(n))
    else:
        attention_reference(model, doc[None], layer, structure, range(n))
    synchronize(doc.device)
    return time.perf_counter() - start


def literal_seconds_per_document(model, doc: torch.Tensor) -> float:
    """Estimated seconds the literal method needs for every neuron of every layer on ``doc``.

    Per structure, one middle layer is timed for n and 2n neurons; the difference divided by n is
    the time per neuron without the fixed cost of a call (capturing the sublayer's input).
    """
    layer, total = model.cfg.n_layers // 2, 0.0
    for structure, n in LITERAL_SAMPLE.items():
        per_neuron = (_reference(model, doc, layer, structure, 2 * n) - _reference(model, doc, layer, structure, n)) / n
        total += max(per_neuron, 0.0) * structure_size(model.cfg, structure) * model.cfg.n_layers
    return total


def measure(model, tokens, args, peak: PeakRSS, literal: bool) -> dict:
    """One row: forward and every PLND mode over the same documents."""
    n_tokens = sum(len(t) for t in tokens)
    blocks_only(model, tokens[:1], args.batch_tokens)  # warm-up (and the C kernel's build)
    plnd(model, tokens[:1], MODES["all"], args.batch_tokens, args.backend)
    base_s, base_mem = timed(lambda: blocks_only(model, tokens, args.batch_tokens), peak, args.repeats)
    row = {
        "documents": len(tokens),
        "tokens": n_tokens,
        "forward_tok_s": round(n_tokens / base_s, 1),
        "forward_peak_gib": base_mem,
    }
    modes = [(label, structures, args.backend) for label, structures in MODES.items()]
    if args.compare_torch:
        modes.append(("all_torch", MODES["all"], "torch"))
    for label, structures, backend in modes:
        seconds, mem = timed(lambda: plnd(model, tokens, structures, args.batch_tokens, backend), peak, args.repeats)
        row[f"plnd_{label}_tok_s"] = round(n_tokens / seconds, 1)
        row[f"plnd_{label}_ratio"] = round(base_s / seconds, 3)  # throughput relative to forward
        row[f"plnd_{label}_peak_gib"] = mem
        row[f"plnd_{label}_s"] = seconds
    if literal:
        row["literal_s_estimated"] = round(literal_seconds_per_document(model, tokens[0]) * len(tokens), 1)
        row["speedup_over_literal"] = round(row["literal_s_estimated"] / row["plnd_all_s"], 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--languages", default="de,ru,zh", help="comma-separated corpus languages")
    parser.add_argument("--lengths", default="64,256,1024", help="comma-separated document lengths in tokens")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per language and document length")
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per mode (median)")
    parser.add_argument("--backend", default="auto", choices=("auto", "c", "torch"), help="Q/K backend")
    parser.add_argument("--compare-torch", action="store_true", help="also time all structures on the torch backend")
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    peak = PeakRSS(args.device)
    languages, lengths = args.languages.split(","), [int(n) for n in args.lengths.split(",")]
    rows = []
    for language in languages:
        for length in lengths:
            tokens = documents(model, length, args.tokens, language)
            literal = language == languages[0]
            rows.append({"language": language, "length": length, **measure(model, tokens, args, peak, literal)})
            print(f"{language} {length}: done", flush=True)
    memory = "GPU memory allocated by torch" if peak.gpu_gib is not None else "resident memory"
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    save_json(
        Path(args.out) / "bench_plnd.json",
        {
            "environment": environment(),
            "device": device,
            "threads": torch.get_num_threads(),
            "backend": args.backend,
            "peak_memory": memory,
            "rows": rows,
        },
    )
    print(
        f"\nthroughput as a ratio to the blocks-only forward over the same tokens "
        f"({device}, {torch.get_num_threads()} threads, Q/K backend {args.backend}; peak {memory})"
    )
    labels = list(MODES) + (["all_torch"] if args.compare_torch else [])
    print(
        f"{'lang':>4} {'length':>6} {'fwd tok/s':>9} "
        + " ".join(f"{label:>9}" for label in labels)
        + f" {'peak GiB fwd/all':>17} {'vs literal':>10}"
    )
    for r in rows:
        speedup = f"{r['speedup_over_literal']}x" if "speedup_over_literal" in r else ""
        print(
            f"{r['language']:>4} {r['length']:>6} {r['forward_tok_s']:>9} "
            + " ".join(f"{r[f'plnd_{label}_ratio']:>9}" for label in labels)
            + f" {r['forward_peak_gib']:>8}/{r['plnd_all_peak_gib']:<8} {speedup:>10}"
        )


if __name__ == "__main__":
    main()
