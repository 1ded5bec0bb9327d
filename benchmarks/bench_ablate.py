"""Deactivation benchmark: the cost of a masked evaluation (loss, accuracy, fidelity on held-out
verses) as a ratio to the same evaluation unmasked, measured in the same run, for a set of the
size PLND finds (~0.3% of neurons) and for a large one (10%); and the same for greedy
continuations.

Usage: ``python benchmarks/bench_ablate.py [--documents 16] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_forward import add_device_argument, synchronize  # noqa: E402

from workbench.batching import tokenize  # noqa: E402
from workbench.corpus import BibleCorpus  # noqa: E402
from workbench.measures import greedy_continuations, measure  # noqa: E402
from workbench.masking import switched_off  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.neurons import STRUCTURES, NeuronDims, NeuronSet, structure_size, total_neurons  # noqa: E402
from workbench.results import environment, save_json  # noqa: E402


def random_set(dims: NeuronDims, share: float, seed: int = 0) -> NeuronSet:
    """``share`` of every layer's neurons of every structure, at random."""
    rng = np.random.default_rng(seed)
    rows = {}
    for s in STRUCTURES:
        size = structure_size(dims, s)
        k = max(1, round(share * size))
        rows[s] = [[layer, i] for layer in range(dims.n_layers) for i in rng.choice(size, k, replace=False)]
    return NeuronSet(rows)


def median_seconds(fn, repeats: int, device="cpu") -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    dims = NeuronDims.of(model)
    corpus = BibleCorpus()
    docs = corpus.parallel_sample(["de"], args.documents, "heldout", seed=0)["de"]
    tokens = tokenize(model, docs["text"])
    prompts = torch.stack([t[:8] for t in tokens if len(t) > 8][:8]).to(args.device)
    own = labelled = np.ones(model.cfg.d_vocab, dtype=bool)
    sets = {"unmasked": None, "PLND-sized set (0.3%)": random_set(dims, 0.003), "large set (10%)": random_set(dims, 0.10)}
    rows = []
    for label, neurons in sets.items():
        with switched_off(model, neurons):
            evaluate = median_seconds(lambda: measure(model, tokens, own, labelled), args.repeats, args.device)
            generate = median_seconds(lambda: greedy_continuations(model, prompts, 8), args.repeats, args.device)
        rows.append({"mask": label, "neurons": len(neurons) if neurons else 0, "evaluate_s": round(evaluate, 2),
                     "continuations_s": round(generate, 2)})  # fmt: skip
    for row in rows:
        row["evaluate_ratio"] = round(row["evaluate_s"] / rows[0]["evaluate_s"], 3)
        row["continuations_ratio"] = round(row["continuations_s"] / rows[0]["continuations_s"], 3)
    n_tokens = sum(len(t) for t in tokens)
    save_json(Path(args.out) / "bench_ablate.json", {"environment": environment(), "device": args.device, "tokens": n_tokens,
                                                    "total_neurons": total_neurons(dims), "rows": rows})  # fmt: skip
    print(f"{args.documents} German verses ({n_tokens} tokens); continuations: 8 prompts x 8 tokens; on {args.device}")
    print(f"{'mask':<24} {'neurons':>8} {'evaluate s':>11} {'ratio':>6} {'continue s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['mask']:<24} {r['neurons']:>8} {r['evaluate_s']:>11} {r['evaluate_ratio']:>6} "
              f"{r['continuations_s']:>11} {r['continuations_ratio']:>6}")  # fmt: skip


if __name__ == "__main__":
    main()
