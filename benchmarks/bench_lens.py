"""Logit-lens benchmark: lens time over real verses as a ratio to a plain forward pass on the
same tokens (measured in the same run), and peak memory.

Usage: ``python benchmarks/bench_lens.py [--documents 16] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_forward import PeakRSS, add_device_argument, synchronize  # noqa: E402

from workbench.data.batching import iter_batches, pad_id_of, tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.language.classifier import default_classifier  # noqa: E402
from workbench.language.vocabulary import vocab_languages  # noqa: E402
from workbench.lens.layer_language import lens_groups  # noqa: E402
from workbench.lens.logit_lens import logit_lens  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402


@torch.inference_mode()
def plain_forward(model, token_lists) -> None:
    for batch in iter_batches(token_lists, pad_id_of(model), device=model.cfg.device):
        model(batch.tokens)


def timed(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--documents", type=int, default=16)
    add_device_argument(parser)
    args = parser.parse_args()
    model = load_model("gemma-3-270m", device=args.device)
    corpus = BibleCorpus()
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    docs = corpus.parallel_sample(["de"], args.documents, "analysis", seed=0)["de"]
    tokens = tokenize(model, docs["text"])
    n_tokens = sum(len(t) for t in tokens)
    groups = lens_groups(vocab, "de")
    peak = PeakRSS(args.device)
    plain_forward(model, tokens[:2])  # warm-up
    with peak.measure():
        forward_s = timed(lambda: plain_forward(model, tokens), args.device)
    rows = [peak.record({"mode": "plain forward (logits)", "seconds": round(forward_s, 2), "ratio": 1.0})]
    for positions, per_doc in (("last", 1), ("sample", 8), ("all", 0)):
        with peak.measure():
            seconds = timed(
                lambda: logit_lens(model, tokens, positions=positions, per_doc=per_doc, groups=groups), args.device
            )
        rows.append(
            peak.record(
                {
                    "mode": f"lens, positions={positions}" + (f" ({per_doc}/doc)" if positions == "sample" else ""),
                    "seconds": round(seconds, 2),
                    "ratio": round(seconds / forward_s, 2),
                }
            )
        )
    result = {
        "environment": environment(),
        "device": args.device,
        "documents": args.documents,
        "tokens": n_tokens,
        "layers_read": model.cfg.n_layers + 1,
        "rows": rows,
    }
    save_json(Path(args.out) / "bench_lens.json", result)
    print(f"{args.documents} German verses, {n_tokens} tokens, {model.cfg.n_layers + 1} layers read, on {args.device}")
    print(f"{'mode':<34} {'seconds':>8} {'ratio':>6} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['mode']:<34} {r['seconds']:>8} {r['ratio']:>6} {r['peak_rss_gib']:>9}")


if __name__ == "__main__":
    main()
