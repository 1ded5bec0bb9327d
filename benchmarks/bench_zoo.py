"""Zoo training benchmark: training throughput (tokens/s) of the default zoo model, and of the
depth preset's sizes, as a ratio to a plain forward + backward pass of the same model over the
same batches (no optimiser, no data plan), measured in the same run, with peak memory.

The ratio says what the training loop costs beyond the model's own arithmetic (AdamW, gradient
clipping, assembling batches from the plan); the tokens/s say how long a preset takes.

Usage: ``python benchmarks/bench_zoo.py [--steps 6] [--layers 2,4,8] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_forward import PeakRSS, add_device_argument  # noqa: E402
from bench_plnd import timed  # noqa: E402

from workbench.models.catalog import zoo_root  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402
from workbench.zoo.options import ZooOptions  # noqa: E402
from workbench.zoo.train import build_model, learning_rate, plan_run, training_step  # noqa: E402


def batches(plan, streams, bos: int, per_step: int, steps: int, device: str) -> list[torch.Tensor]:
    return [
        torch.from_numpy(plan.batch(range(s * per_step, (s + 1) * per_step), streams, bos)).to(device)
        for s in range(steps)
    ]


def forward_backward(model, data: list[torch.Tensor]) -> None:
    for batch in data:
        logits = model(input_ids=batch[:, :-1]).logits
        F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten()).backward()
        model.zero_grad(set_to_none=True)


def training(model, data: list[torch.Tensor], options: ZooOptions) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, betas=(0.9, 0.95), weight_decay=0.1)
    for step, batch in enumerate(data):
        training_step(model, optimizer, batch, learning_rate(options, step, len(data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed optimiser steps per size (after 1 warm-up)")
    parser.add_argument("--layers", default="2,4,8", help="depths to time (the default size otherwise)")
    parser.add_argument("--out", default="results/bench")
    add_device_argument(parser)
    args = parser.parse_args()
    rows = []
    for layers in (int(x) for x in args.layers.split(",")):
        options = ZooOptions(layers=layers, device=args.device)
        _, tokenizer, _, streams, plan = plan_run(options, zoo_root())
        per_step = options.batch_tokens // options.context
        data = batches(plan, streams, tokenizer.bos_token_id, per_step, args.steps + 1, args.device)
        model = build_model(options, tokenizer).to(args.device)
        forward_backward(model, data[:1])  # warm-up
        peak = PeakRSS(args.device)
        plain, plain_peak = timed(lambda m=model, d=data: forward_backward(m, d[1:]), peak, 1)
        trained, train_peak = timed(lambda m=model, d=data, o=options: training(m, d[1:], o), peak, 1)
        tokens = args.steps * per_step * options.context
        rows.append(
            {
                "layers": layers,
                "parameters": sum(p.numel() for p in model.parameters()),
                "forward_backward_tok_s": tokens / plain,
                "train_tok_s": tokens / trained,
                "ratio": plain / trained,
                "peak_gib_forward_backward": plain_peak,
                "peak_gib_train": train_peak,
                "preset_minutes": options.tokens / (tokens / trained) / 60,
            }
        )
    print(
        f"zoo training on {args.device} ({torch.get_num_threads()} threads), default size "
        f"d_model {options.d_model}, context {options.context}, batch {options.batch_tokens} tokens, "
        f"budget {options.tokens:,} tokens"
    )
    print(
        f"{'layers':>6} {'params':>8} {'fwd+bwd tok/s':>14} {'train tok/s':>12} "
        f"{'ratio':>6} {'peak GiB':>9} {'min/model':>10}"
    )
    for r in rows:
        print(
            f"{r['layers']:>6} {r['parameters'] / 1e6:>7.2f}M {r['forward_backward_tok_s']:>14,.0f} "
            f"{r['train_tok_s']:>12,.0f} {r['ratio']:>5.2f}x {r['peak_gib_train']:>9.2f} {r['preset_minutes']:>10.1f}"
        )
    save_json(Path(args.out) / "bench_zoo.json", {"rows": rows, "device": args.device, "versions": environment()})


if __name__ == "__main__":
    main()
