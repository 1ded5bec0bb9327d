"""PLND benchmark: importance throughput as a ratio to a plain forward pass over the same tokens
(measured in the same run), the speed-up over the literal sequential method, and peak memory,
for documents of 64, 256 and 1024 tokens of the default model.

* baseline: the blocks without the unembedding (PLND never computes it), same batches;
* PLND FFN only, and PLND FFN + attention (Q, K, V, O);
* literal: zero one neuron in a copy of its sublayer, rerun the sublayer, measure
  (:mod:`workbench.plnd_reference`); timed on a sample of neurons of one middle layer per
  structure on one document and extrapolated to every neuron of every layer.

Times are medians of ``--repeats`` runs; memory is the process's peak resident size (and, on a
GPU, the peak memory torch allocated there).

Usage: ``python benchmarks/bench_plnd.py [--tokens 2048] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_forward import PeakRSS, add_device_argument, synchronize  # noqa: E402

from workbench.batching import iter_batches, pad_id_of  # noqa: E402
from workbench.corpus import BibleCorpus  # noqa: E402
from workbench.importance import iter_importance  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.neurons import ATTENTION, structure_size  # noqa: E402
from workbench.plnd_reference import attention_reference, ffn_reference  # noqa: E402
from workbench.results import environment, save_json  # noqa: E402

LENGTHS = (64, 256, 1024)
LITERAL_SAMPLE = {"ffn": 16, "attn_q": 8, "attn_k": 8, "attn_v": 8, "attn_o": 8}


def documents(model, length: int, total_tokens: int) -> list[torch.Tensor]:
    """German Bible text cut into documents of exactly ``length`` tokens (BOS first), on the CPU
    like :func:`workbench.batching.tokenize`'s (batches are moved to the model's device)."""
    corpus = BibleCorpus()
    ids = corpus.sample_ids(["de"], 600, "analysis", seed=0)
    stream = model.to_tokens(" ".join(corpus.parallel(["de"], ids)["de"]["text"]), prepend_bos=False)[0].cpu()
    n_docs = max(1, total_tokens // length)
    if len(stream) < n_docs * (length - 1):
        raise RuntimeError("not enough text for the requested documents")
    bos = torch.tensor([model.tokenizer.bos_token_id])
    return [torch.cat([bos, stream[i * (length - 1) : (i + 1) * (length - 1)]]) for i in range(n_docs)]


@torch.inference_mode()
def blocks_only(model, tokens, batch_tokens: int) -> None:
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, next(model.parameters()).device):
        model(batch.tokens, stop_at_layer=model.cfg.n_layers)


def plnd(model, tokens, structures, batch_tokens: int) -> None:
    for _ in iter_importance(model, tokens, structures, batch_tokens=batch_tokens):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per document length")
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (median)")
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    peak = PeakRSS(args.device)
    rows = []
    for length in LENGTHS:
        tokens = documents(model, length, args.tokens)
        n_tokens = sum(len(t) for t in tokens)
        blocks_only(model, tokens[:1], args.batch_tokens)  # warm-up
        base_s, base_mem = timed(lambda: blocks_only(model, tokens, args.batch_tokens), peak, args.repeats)
        row = {"length": length, "documents": len(tokens), "tokens": n_tokens,
               "forward_tok_s": round(n_tokens / base_s, 1), "forward_peak_gib": base_mem}  # fmt: skip
        for label, structures in (("ffn", ("ffn",)), ("all", ("ffn", *ATTENTION))):
            seconds, mem = timed(lambda: plnd(model, tokens, structures, args.batch_tokens), peak, args.repeats)
            row[f"plnd_{label}_tok_s"] = round(n_tokens / seconds, 1)
            row[f"plnd_{label}_ratio"] = round(base_s / seconds, 3)  # throughput relative to forward
            row[f"plnd_{label}_peak_gib"] = mem
            row[f"plnd_{label}_s"] = seconds
        literal = literal_seconds_per_document(model, tokens[0]) * len(tokens)
        row["literal_s_estimated"] = round(literal, 1)
        row["speedup_over_literal"] = round(literal / row["plnd_all_s"], 1)
        rows.append(row)
        print(f"length {length}: done", flush=True)
    memory = "GPU memory allocated by torch" if peak.gpu_gib is not None else "resident memory"
    save_json(Path(args.out) / "bench_plnd.json", {"environment": environment(), "device": args.device,
                                                  "threads": torch.get_num_threads(), "peak_memory": memory,
                                                  "rows": rows})  # fmt: skip
    print(f"\nthroughput as a ratio to the blocks-only forward over the same tokens "
          f"({args.device}, {torch.get_num_threads()} threads; peak {memory})")
    print(f"{'length':>6} {'docs':>5} {'fwd tok/s':>9} {'FFN':>6} {'FFN+attn':>9} {'literal (est.)':>15} {'speed-up':>9} "
          f"{'peak GiB fwd/FFN/all':>22}")  # fmt: skip
    for r in rows:
        print(f"{r['length']:>6} {r['documents']:>5} {r['forward_tok_s']:>9} {r['plnd_ffn_ratio']:>6} "
              f"{r['plnd_all_ratio']:>9} {r['literal_s_estimated']:>14}s {r['speedup_over_literal']:>8}x "
              f"{r['forward_peak_gib']:>12}/{r['plnd_ffn_peak_gib']}/{r['plnd_all_peak_gib']}")  # fmt: skip


if __name__ == "__main__":
    main()
