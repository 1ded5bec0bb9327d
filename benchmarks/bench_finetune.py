"""Neuron fine-tuning benchmark: training throughput of a PLND-sized neuron set (0.3% of all
neurons) as a ratio to a no-grad loss evaluation over the same batches, measured in the same
run, and the same training done the literal way (AdamW on the full weight matrices with their
gradients masked to the neurons' entries). Each mode runs in its own process so that its peak
memory (max RSS) is its own.

Usage: ``python benchmarks/bench_finetune.py [--documents 32] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_forward import add_device_argument, synchronize  # noqa: E402

from workbench.data.batching import iter_batches, pad_id_of, tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.interventions.finetune import TrainOptions, neuron_indices, train_neurons  # noqa: E402
from workbench.lens.readout import mean_next_token_loss  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.neurons.sets import NeuronDims, total_neurons  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

MODES = ("evaluate", "workbench", "masked full weights")


def _setup(documents: int, device: str):
    from bench_ablate import random_set

    model = load_model("gemma-3-270m", device=device)
    docs = BibleCorpus().parallel_sample(["de"], documents, "analysis", seed=0)["de"]
    return model, tokenize(model, docs["text"]), random_set(NeuronDims.of(model), 0.003)


def _masked_full_weights(model, neurons, tokens, options: TrainOptions) -> None:
    """The literal way: whole weight matrices trainable, gradients masked by hooks."""
    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(False)
    trained = []
    for path, index in neuron_indices(model, neurons).items():
        param = model.get_parameter(path)
        mask = torch.zeros(param.numel(), dtype=param.dtype, device=param.device)
        mask[index] = 1
        param.requires_grad_(True)
        param.register_hook(lambda grad, mask=mask.view(param.shape): grad * mask)
        trained.append(param)
    optimiser = torch.optim.AdamW(trained, lr=options.lr, weight_decay=0.0)
    for batch in iter_batches(tokens, pad_id_of(model), options.batch_tokens, device):
        optimiser.zero_grad()
        mean_next_token_loss(model, batch.tokens, batch.mask).backward()
        torch.nn.utils.clip_grad_norm_(trained, options.max_grad_norm)
        optimiser.step()


def run_mode(mode: str, documents: int, device: str = "cpu") -> dict:
    model, tokens, neurons = _setup(documents, device)
    options = TrainOptions()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    if mode == "evaluate":
        with torch.no_grad():
            for batch in iter_batches(tokens, pad_id_of(model), options.batch_tokens, device):
                mean_next_token_loss(model, batch.tokens, batch.mask)
    elif mode == "workbench":
        train_neurons(model, neurons, tokens, options)
    else:
        _masked_full_weights(model, neurons, tokens, options)
    synchronize(device)
    seconds = time.perf_counter() - start
    row = {
        "mode": mode,
        "seconds": round(seconds, 2),
        "tokens": sum(len(t) for t in tokens),
        "neurons": len(neurons),
        "trained_entries": sum(int(i.numel()) for i in neuron_indices(model, neurons).values()),
        "total_neurons": total_neurons(NeuronDims.of(model)),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if torch.device(device).type == "cuda":
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    add_device_argument(parser)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.documents, args.device)))
        return
    rows = []
    for mode in MODES:
        done = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--documents", str(args.documents), "--device", args.device],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for row in rows:
        row["tokens_per_s"] = round(row["tokens"] / row["seconds"], 1)
        row["time_ratio_to_evaluate"] = round(row["seconds"] / rows[0]["seconds"], 2)
    save_json(
        Path(args.out) / "bench_finetune.json", {"environment": environment(), "device": args.device, "rows": rows}
    )
    print(
        f"{args.documents} German verses ({rows[0]['tokens']} tokens), {rows[1]['neurons']} random neurons "
        f"({rows[1]['trained_entries']:,} parameter entries), one epoch, 512-token batches, on {args.device}"
    )
    print(f"{'mode':<22} {'seconds':>8} {'tok/s':>7} {'x evaluate':>11} {'peak RSS GiB':>13}")
    for r in rows:
        print(
            f"{r['mode']:<22} {r['seconds']:>8} {r['tokens_per_s']:>7} "
            f"{r['time_ratio_to_evaluate']:>11} {r['peak_rss_gib']:>13}"
        )


if __name__ == "__main__":
    main()
