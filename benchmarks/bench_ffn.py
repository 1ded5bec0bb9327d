"""FFN detector/combinator collection benchmark: the streamed summary of both sublayers of every
layer (with and without per-verse pooled vectors) as a ratio to a blocks-only forward pass over
the same batches, measured in the same run; and layer-by-layer similarity of the pooled vectors.

Usage: ``python benchmarks/bench_ffn.py [--documents 64] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_forward import add_device_argument, synchronize  # noqa: E402

from workbench.data.batching import iter_batches, pad_id_of, tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.ffn.collector import summarise  # noqa: E402
from workbench.ffn.similarity import layer_similarity  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402


def timed(fn, device="cpu") -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=64)
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    docs = BibleCorpus().parallel_sample(["de"], args.documents, "analysis", seed=0)["de"]
    tokens = tokenize(model, docs["text"])
    ids = [str(i) for i in range(len(tokens))]

    def forward():
        with torch.no_grad():
            for batch in iter_batches(tokens, pad_id_of(model), 512, args.device):
                model(batch.tokens, stop_at_layer=model.cfg.n_layers)

    forward()  # warm-up
    rows = []
    base, _ = timed(forward, args.device)
    rows.append({"mode": "blocks-only forward", "seconds": round(base, 2)})
    for pooled in (False, True):
        seconds, summary = timed(lambda: summarise(model, "de", tokens, ids, pooled=pooled), args.device)
        rows.append({"mode": f"detectors + combinators{' + pooled' if pooled else ''}", "seconds": round(seconds, 2)})
    seconds, _ = timed(
        lambda: layer_similarity(summary.pooled["detector"], summary.pooled["detector"], "cka"), args.device
    )
    rows.append({"mode": "layer x layer CKA (detectors)", "seconds": round(seconds, 2)})
    n_tokens = sum(len(t) for t in tokens)
    for row in rows:
        row["ratio_to_forward"] = round(row["seconds"] / base, 2)
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    result = {
        "environment": environment(),
        "device": args.device,
        "tokens": n_tokens,
        "rows": rows,
        "peak_rss_gib": peak,
    }
    if torch.device(args.device).type == "cuda":
        result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2)
    save_json(Path(args.out) / "bench_ffn.json", result)
    print(
        f"{args.documents} German verses ({n_tokens} tokens) on {args.device}; peak RSS {peak} GiB"
        + (f", peak GPU {result['peak_gpu_gib']} GiB" if "peak_gpu_gib" in result else "")
    )
    for r in rows:
        print(f"{r['mode']:<40} {r['seconds']:>7} s {r['ratio_to_forward']:>6}x")


if __name__ == "__main__":
    main()
