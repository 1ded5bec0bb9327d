"""Attribution graph benchmark: seconds per graph against prompt length and the number of feature
nodes, as a ratio to one forward + backward pass of the model on the same prompt measured in the
same run; peak memory per setting.

The transcoder: ``--clt FOLDER`` (a saved one, e.g. ``results/clt/parts/clt-train-*/transcoder``),
else one trained here on ``--tokens`` rows with the clt-train slice's defaults (quality does not
matter for timing; the number of active features does, and is reported). Prompts: held-out verses
of ``--language`` cut to each ``--lengths`` (BOS included), the same verses for every setting.

A graph is ``workbench.clt.graphs.attribution.attribute`` (the replacement model's pass, the logit
targets, batched backward passes visiting up to ``--max-features`` features by influence) plus
pruning (``Graph.prune``, defaults 0.8 / 0.98). The baseline is ``model(tokens)``, the top
logit's ``backward()`` (parameters frozen, the embeddings' output requiring grad). Times are
medians of ``--repeats``; memory is the process's peak resident size sampled every 5 ms (on CUDA,
``torch.cuda.max_memory_allocated``), reset per setting.

Usage: ``python benchmarks/bench_graph.py [--model zoo:mix-en50] [--clt FOLDER] [--lengths 8,16,32,64]
[--max-features 64,256,1024,4096] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_clt import documents  # noqa: E402
from bench_forward import PeakRSS, add_device_argument  # noqa: E402
from bench_plnd import timed  # noqa: E402

from workbench.analyses.clt_train.options import Options as CLTOptions  # noqa: E402
from workbench.clt.graphs.attribution import attribute  # noqa: E402
from workbench.clt.training.train import TrainSettings, train_clt  # noqa: E402
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder  # noqa: E402
from workbench.data.batching import tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.models.loading import load_model, model_source  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

MB = 2**20


def transcoder(model, args) -> CrossLayerTranscoder:
    """The ``--clt`` folder, or a transcoder trained here on ``--tokens`` rows (slice defaults)."""
    if args.clt:
        return CrossLayerTranscoder.load(Path(args.clt), args.device).eval()
    options = CLTOptions()
    name = model_source(model).get("name", args.model)
    config = CLTConfig(model.cfg.n_layers, model.cfg.d_model, args.features, model=name)
    settings = TrainSettings(
        tokens=args.tokens,
        batch_tokens=options.batch,
        lr=options.lr,
        sparsity=options.sparsity,
        sparsity_warmup=options.warmup,
        dead_penalty=options.dead_penalty,
        block_documents=options.block_documents,
        seed=0,
    )
    docs = documents(model, args.languages.split(","), 100)
    clt, _ = train_clt(model, docs, config, settings, show_progress=False)
    return clt.eval()


def prompts(model, language: str, lengths: list[int], n: int) -> dict[int, list[torch.Tensor]]:
    """``n`` held-out verses long enough for every length, cut to each length (BOS included)."""
    corpus = BibleCorpus()
    ids = corpus.sample_ids([language], 4 * n, "heldout", 0)
    docs = [
        d for d in tokenize(model, corpus.parallel([language], ids)[language]["text"], ids) if len(d) >= max(lengths)
    ]
    if len(docs) < n:
        raise SystemExit(f"Only {len(docs)} {language} verses have {max(lengths)} tokens; lower --lengths.")
    return {length: [d[:length].to(model.cfg.device) for d in docs[:n]] for length in lengths}


def forward_backward(model, tokens: torch.Tensor) -> None:
    """The baseline: a forward pass and the top logit's backward pass to the embeddings."""
    start = {}

    def keep(x, hook):
        x = x.detach().requires_grad_(True)
        start["x"] = x
        return x

    logits = model.run_with_hooks(tokens[None], fwd_hooks=[("blocks.0.hook_resid_pre", keep)])
    logits[0, -1].max().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:mix-en50", help="any name load_model accepts (e.g. tiny)")
    parser.add_argument("--clt", default="", help="a saved transcoder folder (default: train one here)")
    parser.add_argument("--features", type=int, default=2048, help="features per layer of a transcoder trained here")
    parser.add_argument("--tokens", type=int, default=20_000, help="training rows of a transcoder trained here")
    parser.add_argument("--languages", default="en,fr,de,ar,zh", help="training languages of a transcoder trained here")
    parser.add_argument("--language", default="en", help="the prompts' language")
    parser.add_argument("--lengths", default="8,16,32,64", help="prompt lengths in tokens, BOS included")
    parser.add_argument(
        "--max-features", default="64,256,1024,4096", help="feature-node budgets (at the longest prompt)"
    )
    parser.add_argument("--prompts", type=int, default=3, help="prompts per setting")
    parser.add_argument("--batch", type=int, default=32, help="targets per backward pass")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per setting (median)")
    parser.add_argument("--out", default="results/bench")
    add_device_argument(parser)
    args = parser.parse_args()

    model = load_model(args.model, device=args.device)
    for p in model.parameters():
        p.requires_grad_(False)
    clt = transcoder(model, args)
    lengths = [int(x) for x in args.lengths.split(",")]
    budgets = [int(x) for x in args.max_features.split(",")]
    texts = prompts(model, args.language, lengths, args.prompts)
    peak = PeakRSS(args.device)
    settings = [(length, None) for length in lengths] + [(lengths[-1], b) for b in budgets]
    forward_backward(model, texts[lengths[0]][0])  # warm-up
    attribute(model, clt, texts[lengths[0]][0], batch=args.batch)
    rows = []
    for length, budget in settings:
        base, _ = timed(lambda: [forward_backward(model, t) for t in texts[length]], peak, args.repeats)
        graphs = []

        def graph_all() -> None:
            graphs.clear()
            for t in texts[length]:
                graph = attribute(model, clt, t, max_features=budget, batch=args.batch)
                graph.prune()
                graphs.append(graph)

        seconds, _ = timed(graph_all, peak, args.repeats)
        n = len(texts[length])
        rows.append(
            peak.record(
                {
                    "tokens": length,
                    "max_features": budget or "all",
                    "active_features": sum(g.meta["active_features"] for g in graphs) / n,
                    "feature_nodes": sum(g.n_features for g in graphs) / n,
                    "targets": sum(len(g.targets) for g in graphs) / n,
                    "seconds_per_graph": round(seconds / n, 4),
                    "forward_backward_seconds": round(base / n, 5),
                    "ratio": round(seconds / base, 1),
                }
            )
        )
        print(
            f"{length:>4} tokens, max {budget or 'all':>5}: {rows[-1]['feature_nodes']:>7.0f} feature nodes "
            f"({rows[-1]['active_features']:.0f} active), {seconds / n:7.2f} s/graph = {seconds / base:7.1f}x "
            f"forward+backward, peak {rows[-1].get('peak_rss_gib', rows[-1].get('peak_gpu_gib'))} GiB"
        )
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    save_json(
        Path(args.out) / "bench_graph.json",
        {
            "environment": environment(),
            "torch": torch.__version__,
            "device": device,
            "threads": torch.get_num_threads(),
            "model": model_source(model),
            "model_shape": {"n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model},
            "transcoder": {"folder": args.clt or "trained here", "features": clt.config.n_features},
            "settings": vars(args),
            "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB, 2),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
