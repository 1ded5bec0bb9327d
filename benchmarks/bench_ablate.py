"""Deactivation benchmark: the cost of a masked evaluation (loss, accuracy, fidelity on held-out
verses) as a ratio to the same evaluation unmasked, measured in the same run, for a set of the
size PLND finds (~0.3% of neurons) and for a large one (10%); and the same for greedy
continuations.

Then a whole deactivation experiment at the ablate defaults (4 languages x 6 held-out verses,
PLND-sized random sets standing in for PLND's, one seed, continuations) or at ``--preset paper``
sizes: measurements one per forward pass (before issue 13) against measurements sharing passes
(a mask per batch row), each with the run's 512-token batches and with 2,048-token ones; the
results are compared (largest loss difference).

Usage: ``python benchmarks/bench_ablate.py [--documents 16] [--preset paper] [--device cpu]
[--out results/bench]``.
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

from workbench.analyses import ablate  # noqa: E402
from workbench.data.batching import tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.interventions.deactivation import SETTINGS_PER_PASS, run_deactivation  # noqa: E402
from workbench.interventions.measures import measure  # noqa: E402
from workbench.lens.layer_language import ENGLISH, INPUT, OTHER  # noqa: E402
from workbench.lens.readout import greedy  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.neurons.masking import switched_off  # noqa: E402
from workbench.neurons.sets import STRUCTURES, NeuronDims, NeuronSet, structure_size, total_neurons  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402


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


def experiment(model, options: ablate.Options, languages: list[str]) -> list[dict]:
    """The whole experiment, one measurement per pass and shared passes, at two batch sizes."""
    dims = NeuronDims.of(model)
    corpus = BibleCorpus()
    docs = corpus.parallel_sample(languages, options.documents, "heldout", seed=0)
    tokens = {lang: tokenize(model, docs[lang]["text"]) for lang in languages}
    sets = {lang: random_set(dims, 0.003, seed=i) for i, lang in enumerate(languages)}
    rng = np.random.default_rng(0)
    categories = {lang: rng.choice([ENGLISH, INPUT, OTHER], model.cfg.d_vocab).astype(np.int8) for lang in languages}
    rows, reference = [], None
    for per_pass in (1, SETTINGS_PER_PASS):
        for batch_tokens in (512, 2048):
            start = time.perf_counter()
            result = run_deactivation(
                model, tokens, sets, categories, options, batch_tokens=batch_tokens, settings_per_pass=per_pass
            )
            seconds = time.perf_counter() - start
            losses = np.array([[result.cross[a][b].loss for b in languages] for a in languages])
            reference = losses if reference is None else reference
            rows.append(
                {
                    "settings_per_pass": per_pass,
                    "batch_tokens": batch_tokens,
                    "seconds": round(seconds, 1),
                    "max_loss_difference": float(np.abs(losses - reference).max()),
                }
            )
    for row in rows:
        row["speedup"] = round(rows[0]["seconds"] / row["seconds"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", choices=("paper",), help="the whole experiment at the paper's sizes")
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    dims = NeuronDims.of(model)
    corpus = BibleCorpus()
    docs = corpus.parallel_sample(["de"], args.documents, "heldout", seed=0)["de"]
    tokens = tokenize(model, docs["text"])
    prompts = torch.stack([t[:8] for t in tokens if len(t) > 8][:8]).to(args.device)
    own = labelled = np.ones(model.cfg.d_vocab, dtype=bool)
    sets = {
        "unmasked": None,
        "PLND-sized set (0.3%)": random_set(dims, 0.003),
        "large set (10%)": random_set(dims, 0.10),
    }
    rows = []
    for label, neurons in sets.items():
        with switched_off(model, neurons), torch.no_grad():
            evaluate = median_seconds(lambda: measure(model, tokens, own, labelled), args.repeats, args.device)
            generate = median_seconds(lambda: greedy(model, prompts, 8)[0], args.repeats, args.device)
        rows.append(
            {
                "mask": label,
                "neurons": len(neurons) if neurons else 0,
                "evaluate_s": round(evaluate, 2),
                "continuations_s": round(generate, 2),
            }
        )
    for row in rows:
        row["evaluate_ratio"] = round(row["evaluate_s"] / rows[0]["evaluate_s"], 3)
        row["continuations_ratio"] = round(row["continuations_s"] / rows[0]["continuations_s"], 3)
    n_tokens = sum(len(t) for t in tokens)
    options = ablate.Options(**ablate.Options.PRESETS[args.preset]) if args.preset else ablate.Options()
    languages = list(options.languages) or ["en", "de", "zh", "sw"]
    whole = experiment(model, options, languages)
    save_json(
        Path(args.out) / "bench_ablate.json",
        {
            "environment": environment(),
            "device": args.device,
            "tokens": n_tokens,
            "total_neurons": total_neurons(dims),
            "rows": rows,
            "experiment": {"options": options.to_dict(), "languages": languages, "rows": whole},
        },
    )
    print(f"{args.documents} German verses ({n_tokens} tokens); continuations: 8 prompts x 8 tokens; on {args.device}")
    print(f"{'mask':<24} {'neurons':>8} {'evaluate s':>11} {'ratio':>6} {'continue s':>11} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['mask']:<24} {r['neurons']:>8} {r['evaluate_s']:>11} {r['evaluate_ratio']:>6} "
            f"{r['continuations_s']:>11} {r['continuations_ratio']:>6}"
        )
    print(
        f"\nwhole experiment: {len(languages)} languages x {options.documents} verses, groups "
        f"{','.join(options.groups)}, {options.seeds} seed(s), {options.new_tokens} new tokens"
    )
    print(f"{'per pass':>8} {'batch tokens':>12} {'seconds':>8} {'speed-up':>9} {'max loss diff':>14}")
    for r in whole:
        print(
            f"{r['settings_per_pass']:>8} {r['batch_tokens']:>12} {r['seconds']:>8} {r['speedup']:>8}x "
            f"{r['max_loss_difference']:>14.2e}"
        )


if __name__ == "__main__":
    main()
