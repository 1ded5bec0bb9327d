"""What more rows, features, sparsity or steps buy a Gemma 3 270M transcoder: a short sweep on
three layers (3, 9, 15) of per-layer transcoders, trained on cached activations.

The rows are the MLP inputs and outputs of ``--documents`` analysis verses per language of the
Gemma study's eight languages (BOS dropped), shuffled by document; the last ``--heldout`` rows are
held out. Each configuration trains with ``workbench.clt.training.loss.clt_loss`` (lambda ramped
over the first half, Adam, clipping at 1, as ``train_clt``) for ``epochs`` passes over the training
rows and reports FVU and L0 per layer on the held-out rows, and training rows/s.

Usage: ``python benchmarks/sweep_clt_gemma.py [--documents 130] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_clt import documents  # noqa: E402

from workbench.clt.activations import document_rows  # noqa: E402
from workbench.clt.training.loss import clt_loss  # noqa: E402
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.runs.options import GEMMA_CLT_LANGUAGES  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

LAYERS = (3, 9, 15)
# (lambda, learning rate, batch, epochs, features)
CONFIGS = [
    (1.0, 1e-3, 1024, 1, 2048),
    (1.0, 1e-3, 256, 1, 2048),
    (3.0, 3e-3, 256, 1, 2048),
    (3.0, 3e-3, 256, 1, 4096),
    (3.0, 3e-3, 256, 3, 2048),
    (1.5, 3e-3, 256, 3, 2048),
    (3.0, 3e-3, 256, 6, 2048),
]


def train_one(x, y, held_x, held_y, sparsity, lr, batch, epochs, features) -> dict:
    torch.manual_seed(0)
    clt = CrossLayerTranscoder(CLTConfig(len(LAYERS), x.shape[-1], features, per_layer=True))
    clt.set_scales(x[:8192], y[:8192])
    optimizer = torch.optim.Adam(clt.parameters(), lr)
    per_epoch = len(x) // batch
    steps = epochs * per_epoch
    started = time.perf_counter()
    for step in range(steps):
        rows = slice((step % per_epoch) * batch, (step % per_epoch + 1) * batch)
        ramp = min(1.0, (step + 1) / (0.5 * steps))
        parts = clt_loss(clt, x[rows], y[rows], sparsity * ramp, dead=1e-2)
        optimizer.zero_grad()
        parts.total.backward()
        torch.nn.utils.clip_grad_norm_(clt.parameters(), 1.0)
        optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        recon, acts = clt(held_x)
        fvu = (recon - held_y).pow(2).sum((0, 2)) / (held_y - held_y.mean(0)).pow(2).sum((0, 2))
        l0 = (acts > 0).sum(-1).float().mean(0)
    return {
        "sparsity": sparsity,
        "lr": lr,
        "batch": batch,
        "epochs": epochs,
        "features": features,
        "rows": steps * batch,
        "fvu": [round(v, 4) for v in fvu.tolist()],
        "l0": [round(v, 1) for v in l0.tolist()],
        "rows_per_s": round(steps * batch / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=130, help="analysis verses per language")
    parser.add_argument("--heldout", type=int, default=3500, help="held-out rows")
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()
    model = load_model("gemma-3-270m")
    docs = documents(model, list(GEMMA_CLT_LANGUAGES), args.documents, seed=1)
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(0)).tolist()
    rows = list(document_rows(model, [docs[i] for i in order], 2048, layers=LAYERS))
    x, y = torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])
    n = len(x) - args.heldout
    results = []
    for config in CONFIGS:
        results.append(train_one(x[:n], y[:n], x[n:], y[n:], *config))
        print(results[-1], flush=True)
    save_json(
        Path(args.out) / "sweep_clt_gemma.json",
        {
            "environment": environment(),
            "layers": LAYERS,
            "training_rows": n,
            "heldout_rows": args.heldout,
            "languages": GEMMA_CLT_LANGUAGES,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
