"""What makes a Gemma 3 270M transcoder faithful on 2 cores: each training lever, measured.

Per-layer transcoders on a few layers (3, 9 and 15: early, middle and late, as the first sweep),
trained with ``train_clt`` itself on one read of the training
rows (``reuse``: the activations of ``--documents`` analysis verses per language of the Gemma
study's eight languages), one configuration after another. Each lever is switched on beside the
baseline (the ``gemma-clt`` preset's lambda 1.5, rate 3e-3, batch 256): the affine skip fitted in
closed form, the encoder tied to the decoder, the per-layer L0 controller, a smaller lambda, more
passes over the rows. Reported per configuration and layer on held-out verses (``--heldout`` per
language): FVU pooled and in the worst language, L0, dead share; and training rows per second. The
affine map alone (the skip, no features) is the first row.

Usage: ``python benchmarks/sweep_clt_gemma.py [--documents 260] [--heldout 25] [--rows 90000]
[--only NAME,...] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_clt import documents  # noqa: E402
from bench_forward import add_device_argument  # noqa: E402

from workbench.clt.activations import document_rows  # noqa: E402
from workbench.clt.training.rows import read_block  # noqa: E402
from workbench.clt.training.train import TrainSettings, train_clt  # noqa: E402
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.runs.options import GEMMA_CLT_LANGUAGES  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

LAYERS = (3, 9, 15)
BASE = TrainSettings(batch_tokens=256, lr=3e-3, sparsity=1.5, dead_penalty=1e-2, reuse=True, checkpoint_every=10**9)
# name -> (CLTConfig fields, TrainSettings fields); "rows" multiplies --rows
CONFIGS: dict[str, tuple[dict, dict]] = {
    "baseline": ({}, {}),
    "skip": ({"skip": True}, {}),
    "skip+tied": ({"skip": True}, {"tied_init": True}),
    "skip+l0=48": ({"skip": True}, {"target_l0": 48.0}),
    "skip+tied+l0=48": ({"skip": True}, {"tied_init": True, "target_l0": 48.0}),
    "skip+lambda=0.5": ({"skip": True}, {"sparsity": 0.5}),
    "lambda=0.3": ({}, {"sparsity": 0.3}),
    "skip+lambda=0.3": ({"skip": True}, {"sparsity": 0.3}),
    "skip+lambda=0.1": ({"skip": True}, {"sparsity": 0.1}),
    "skip+lambda=0.3+batch=128": ({"skip": True}, {"sparsity": 0.3, "batch_tokens": 128}),
    "skip+lambda=0.3+lr=1e-2": ({"skip": True}, {"sparsity": 0.3, "lr": 1e-2}),
    "skip+lambda=0.3+2x rows": ({"skip": True}, {"sparsity": 0.3, "rows": 2}),
    "skip+tied+l0=48+lr=1e-3": ({"skip": True}, {"tied_init": True, "target_l0": 48.0, "lr": 1e-3}),
    "skip+tied+l0=48+4096 features": ({"skip": True, "n_features": 4096}, {"tied_init": True, "target_l0": 48.0}),
    "skip+tied+l0=48+2x rows": ({"skip": True}, {"tied_init": True, "target_l0": 48.0, "rows": 2}),
}


@torch.no_grad()
def measure(
    clt: CrossLayerTranscoder, held: dict[str, tuple[torch.Tensor, torch.Tensor]], affine: bool = False
) -> dict:
    """FVU pooled and per language, L0 and dead share per layer on the held-out rows."""
    err, var, l0, ever, n = {}, {}, 0.0, None, 0
    for lang, (x, y) in held.items():
        acts = torch.zeros(len(x), len(LAYERS), clt.config.n_features)
        recon = clt.compact_decode(acts) + clt.compact_skip(x)
        if not affine:
            recon, acts = clt.compact_forward(x)
        err[lang] = (recon - y).double().pow(2).sum((0, 2))
        var[lang] = (y - y.mean(0)).double().pow(2).sum((0, 2))
        l0 = l0 + (acts > 0).sum((0, 2)).double()
        ever = (acts > 0).any(0) if ever is None else ever | (acts > 0).any(0)
        n += len(x)
    per_lang = {lang: (err[lang] / var[lang]).tolist() for lang in held}
    pooled = (sum(err.values()) / sum(var.values())).tolist()
    worst = [max(per_lang[lang][i] for lang in held) for i in range(len(LAYERS))]
    assert ever is not None
    return {
        "fvu": [round(v, 4) for v in pooled],
        "fvu_worst": [round(v, 4) for v in worst],
        "worst_language": [max(held, key=lambda lang: per_lang[lang][i]) for i in range(len(LAYERS))],
        "l0": [round(v, 1) for v in (l0 / n).tolist()],
        "dead": [round(v, 3) for v in (1 - ever.float().mean(-1)).tolist()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=260, help="analysis verses per language")
    parser.add_argument("--heldout", type=int, default=25, help="held-out verses per language")
    parser.add_argument("--rows", type=int, default=90_000, help="training rows (steps x batch) per configuration")
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    parser.add_argument("--out", default="results/bench")
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    langs = list(GEMMA_CLT_LANGUAGES)
    layers = list(LAYERS)
    started = time.perf_counter()
    docs = documents(model, langs, args.documents, seed=1)
    base = replace(BASE, tokens=args.rows)
    block = read_block(model, docs, base, 0, layers)
    read_seconds = time.perf_counter() - started
    held = {}
    for lang in langs:
        rows = list(document_rows(model, heldout(model, lang, args.heldout), 2048, layers))
        held[lang] = (torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]))
    n_held = sum(len(h[0]) for h in held.values())
    print(f"{len(block)} training rows read in {read_seconds:.0f} s; held-out rows {n_held}")
    chosen = [name for name in CONFIGS if not args.only or name in args.only.split(",")]
    results = []
    for name in chosen:
        fields, overrides = CONFIGS[name]
        overrides = dict(overrides)
        settings = replace(base, tokens=args.rows * overrides.pop("rows", 1), **overrides)
        shape = {"n_features": args.features, "per_layer": True, "layers": LAYERS, **fields}  # fields override
        config = CLTConfig(model.cfg.n_layers, model.cfg.d_model, **shape)
        clt, state = train_clt(model, docs, config, settings, show_progress=False, first=block)
        clt.eval()
        if name == "skip":  # no steps: the skip and bias fitted in closed form, nothing trained
            fitted, _ = train_clt(model, docs, config, replace(settings, tokens=0), show_progress=False, first=block)
            results.append({"name": "affine map alone", **measure(fitted, held, affine=True)})
            print(results[-1], flush=True)
        row = {
            "name": name,
            **measure(clt, held),
            "rows": settings.steps * settings.batch_tokens,
            "rows_per_s": round(settings.steps * settings.batch_tokens / state.seconds, 1),
            "lambdas": [round(v, 3) for v in state.lambdas],
        }
        results.append(row)
        print(row, flush=True)
    save_json(
        Path(args.out) / "sweep_clt_gemma.json",
        {
            "environment": environment(),
            "layers": LAYERS,
            "training_rows": len(block),
            "read_seconds": read_seconds,
            "heldout_verses_per_language": args.heldout,
            "languages": langs,
            "settings": dict(vars(base)),
            "results": results,
        },
    )


def heldout(model, lang: str, n: int) -> list[torch.Tensor]:
    """``n`` held-out verses of one language, tokenised (BOS first)."""
    from bench_clt import tokenize

    from workbench.data.corpora.bible import BibleCorpus

    corpus = BibleCorpus()
    ids = corpus.sample_ids([lang], n, "heldout", seed=2)
    return tokenize(model, corpus.parallel([lang], ids)[lang]["text"], ids)


if __name__ == "__main__":
    main()
