"""FFN detector/combinator collection benchmark: the streamed summary of both sublayers of every
layer (with and without per-verse pooled vectors) as a ratio to a blocks-only forward pass over
the same batches, measured in the same run; and layer-by-layer similarity of the pooled vectors.

Usage: ``python benchmarks/bench_ffn.py [--documents 64] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from workbench.batching import iter_batches, pad_id_of, tokenize  # noqa: E402
from workbench.corpus import BibleCorpus  # noqa: E402
from workbench.ffn import summarise  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.results import environment, save_json  # noqa: E402
from workbench.similarity import layer_similarity  # noqa: E402


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=64)
    args = parser.parse_args()
    model = load_model("gemma-3-270m")
    docs = BibleCorpus().parallel_sample(["de"], args.documents, "analysis", seed=0)["de"]
    tokens = tokenize(model, docs["text"])
    ids = [str(i) for i in range(len(tokens))]

    def forward():
        with torch.no_grad():
            for batch in iter_batches(tokens, pad_id_of(model), 512):
                model(batch.tokens, stop_at_layer=model.cfg.n_layers)

    forward()  # warm-up
    rows = []
    base, _ = timed(forward)
    rows.append({"mode": "blocks-only forward", "seconds": round(base, 2)})
    for pooled in (False, True):
        seconds, summary = timed(lambda: summarise(model, "de", tokens, ids, pooled=pooled))
        rows.append({"mode": f"detectors + combinators{' + pooled' if pooled else ''}", "seconds": round(seconds, 2)})
    seconds, _ = timed(lambda: layer_similarity(summary.pooled["detector"], summary.pooled["detector"], "cka"))
    rows.append({"mode": "layer x layer CKA (detectors)", "seconds": round(seconds, 2)})
    n_tokens = sum(len(t) for t in tokens)
    for row in rows:
        row["ratio_to_forward"] = round(row["seconds"] / base, 2)
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    save_json(Path(args.out) / "bench_ffn.json", {"environment": environment(), "tokens": n_tokens, "rows": rows, "peak_rss_gib": peak})
    print(f"{args.documents} German verses ({n_tokens} tokens); peak RSS {peak} GiB")
    for r in rows:
        print(f"{r['mode']:<40} {r['seconds']:>7} s {r['ratio_to_forward']:>6}x")


if __name__ == "__main__":
    main()
