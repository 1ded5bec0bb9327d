"""Cross-layer transcoder benchmark: training rows/s, and what reading activations, the CLT's
encode + decode and the replacement model cost, all as ratios to a plain forward pass over the
same batches measured in the same run; peak memory per phase; the transcoder's size.

Every phase runs over the same documents (``--documents`` verses per language of the Bible
corpus's analysis split, tokenized BOS first, as the clt-train slice does) in the same padded
batches (``workbench.data.batching.iter_batches``, ``--batch-tokens`` per batch):

* forward: ``model(tokens, stop_at_layer=n_layers)``, the blocks without the final norm and the
  unembedding (a transcoder never needs them);
* read: ``workbench.clt.activations.document_rows``, i.e. ``mlp_io``'s hooked forward (same
  stop) keeping every layer's MLP input and output at the real positions without BOS; the rows
  are kept, as a training block keeps them;
* clt: the transcoder's forward (encode + decode, no grad) on those rows, ``--batch`` at a time;
  clt_encode: the encoder alone;
* replacement: the forward of ``with replacement(model, clt)``, every MLP output replaced
  (same stop, same batches);
* train: ``workbench.clt.training.train.train_clt`` on ``--tokens`` rows (``--batch`` per step) from
  the same documents, with the clt-train slice's defaults. ``state.seconds`` times the steps
  including the block reads inside the stream, but not the first block (read before the loop);
  the wall time covers the whole call.

Ratios are throughput relative to the forward: ``forward seconds / phase seconds`` over the same
text (train: its rows/s over the forward's rows/s, rows being the non-BOS real tokens). Times are
medians of ``--repeats`` runs (training runs once). The transcoder used by clt and replacement is
the one just trained. Memory: the process's peak resident size sampled every 5 ms with psutil
while the phase runs (model, documents and what earlier phases hold included; the RSS at the
phase's start is given too), and on CUDA ``torch.cuda.max_memory_allocated`` per phase (reset
before each).

``--set gemma`` measures the Gemma study's transcoder: Gemma 3 270M, per-layer transcoders on all
18 layers, the ``gemma-clt`` preset's languages, batch, rate and sparsity (its file:
``bench_clt_gemma.json``). ``--per-layer``, ``--window`` and ``--layers`` give other shapes.

Usage: ``python benchmarks/bench_clt.py [--set gemma] [--model zoo:mix-en50] [--features 2048]
[--tokens 20000] [--documents 200] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import os
import resource
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402
from bench_forward import PeakRSS, add_device_argument  # noqa: E402
from bench_plnd import timed  # noqa: E402

from workbench.analyses.clt_train.options import Options as CLTOptions  # noqa: E402
from workbench.clt.activations import document_rows  # noqa: E402
from workbench.clt.quality import replacement  # noqa: E402
from workbench.clt.training.train import TrainSettings, train_clt  # noqa: E402
from workbench.clt.transcoder import CLTConfig  # noqa: E402
from workbench.data.batching import iter_batches, pad_id_of, tokenize  # noqa: E402
from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.models.loading import load_model, model_source  # noqa: E402
from workbench.runs.options import GEMMA_CLT_LANGUAGES  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402

MB = 2**20


def documents(model, languages: list[str], n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` parallel verses of the analysis split per language, as token lists (BOS first)."""
    corpus = BibleCorpus()
    ids = corpus.sample_ids(languages, n, "analysis", seed)
    texts = corpus.parallel(languages, ids)
    return [doc for lang in languages for doc in tokenize(model, texts[lang]["text"], ids)]


@torch.inference_mode()
def forward(model, docs, batch_tokens: int) -> None:
    for batch in iter_batches(docs, pad_id_of(model), batch_tokens, model.cfg.device):
        model(batch.tokens, stop_at_layer=model.cfg.n_layers)


def read(model, docs, batch_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(document_rows(model, docs, batch_tokens))


@torch.inference_mode()
def transcode(clt, x: torch.Tensor, batch: int, encode_only: bool = False) -> None:
    step = clt.encode if encode_only else clt
    for start in range(0, len(x), batch):
        step(x[start : start + batch])


@torch.inference_mode()
def replaced(model, clt, docs, batch_tokens: int) -> None:
    with replacement(model, clt):
        forward(model, docs, batch_tokens)


def rss_gib() -> float:
    return round(psutil.Process().memory_info().rss / 2**30, 2)


def phase(name: str, fn, peak: PeakRSS, repeats: int, units: int, unit: str) -> dict:
    """Median seconds of ``fn`` and its peak memory, as one row of the table."""
    before = rss_gib()
    seconds, _ = timed(fn, peak, repeats)
    row = {
        "phase": name,
        "seconds": round(seconds, 4),
        unit: units,
        f"{unit}_per_s": round(units / seconds, 1),
        "rss_before_gib": before,
    }
    return peak.record(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:mix-en50", help="any name load_model accepts (e.g. tiny)")
    parser.add_argument("--features", type=int, default=2048, help="transcoder features per layer")
    parser.add_argument("--tokens", type=int, default=20_000, help="training rows (token positions)")
    parser.add_argument("--batch", type=int, default=1024, help="rows per optimiser step (and per CLT call)")
    parser.add_argument("--languages", default="en,fr,de,ar,zh", help="comma-separated corpus languages")
    parser.add_argument("--documents", type=int, default=200, help="verses per language (analysis split)")
    parser.add_argument("--batch-tokens", type=int, default=512, help="padded tokens per forward batch (the run's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per phase (median); training runs once")
    parser.add_argument("--per-layer", action="store_true", help="per-layer transcoders")
    parser.add_argument("--window", type=int, default=None, help="a windowed CLT: own + next WINDOW layers")
    parser.add_argument("--layers", default="", help="comma-separated layers to cover (default all)")
    parser.add_argument("--set", choices=["gemma"], default=None, help="gemma: the Gemma study's per-layer set")
    parser.add_argument("--out", default="results/bench")
    add_device_argument(parser)
    args = parser.parse_args()
    train_options = CLTOptions()  # the clt-train slice's defaults, but for the shape and the length
    if args.set == "gemma":
        preset = CLTOptions.PRESETS["gemma-clt"]
        train_options = CLTOptions(**{k: v for k, v in preset.items() if k not in ("documents", "tokens")})
        args.model, args.per_layer, args.batch = "gemma-3-270m", True, train_options.batch
        args.languages, args.batch_tokens = ",".join(GEMMA_CLT_LANGUAGES), 2048

    model = load_model(args.model, device=args.device)
    languages = args.languages.split(",")
    docs = documents(model, languages, args.documents)
    n_tokens = sum(len(d) for d in docs)  # real tokens, BOS included
    n_rows = n_tokens - len(docs)  # what a transcoder sees: real tokens without BOS
    peak = PeakRSS(args.device)
    bt = args.batch_tokens

    options = train_options
    name = model_source(model).get("name", args.model)
    layers = tuple(int(x) for x in args.layers.split(",") if x.strip())
    config = CLTConfig(
        model.cfg.n_layers,
        model.cfg.d_model,
        args.features,
        args.per_layer,
        model=name,
        window=args.window,
        layers=layers,
    )
    settings = TrainSettings(
        tokens=args.tokens,
        batch_tokens=args.batch,
        lr=options.lr,
        sparsity=options.sparsity,
        sparsity_warmup=options.warmup,
        dead_penalty=options.dead_penalty,
        block_documents=options.block_documents,
        forward_tokens=bt,
        seed=0,
    )

    forward(model, docs[:8], bt)  # warm-up
    read(model, docs[:8], bt)
    rows = [phase("forward", lambda: forward(model, docs, bt), peak, args.repeats, n_tokens, "tokens")]
    rows[0]["rows_per_s"] = round(n_rows / rows[0]["seconds"], 1)
    held: dict = {}

    def read_all() -> None:
        held.pop("rows", None)  # one copy of the rows at a time, as a training block holds them
        held["rows"] = read(model, docs, bt)

    rows.append(phase("read", read_all, peak, args.repeats, n_rows, "rows"))
    x = torch.cat([inputs for inputs, _ in held.pop("rows")])

    result: dict = {}
    before = rss_gib()

    def train() -> None:
        result["clt"], result["state"] = train_clt(model, docs, config, settings, show_progress=False)

    wall, _ = timed(train, peak, 1)
    clt, state = result["clt"], result["state"]
    clt.eval()
    trained_rows = state.step * settings.batch_tokens
    rows.append(
        peak.record(
            {
                "phase": "train",
                "seconds": round(state.seconds, 4),
                "rows": trained_rows,
                "rows_per_s": round(trained_rows / state.seconds, 1),
                "wall_seconds": round(wall, 4),
                "rows_per_s_wall": round(trained_rows / wall, 1),
                "steps": state.step,
                "blocks_read": state.block + 1,
                "rss_before_gib": before,
            }
        )
    )

    transcode(clt, x[: args.batch], args.batch)  # warm-up
    rows.append(phase("clt", lambda: transcode(clt, x, args.batch), peak, args.repeats, len(x), "rows"))
    rows.append(phase("clt_encode", lambda: transcode(clt, x, args.batch, True), peak, args.repeats, len(x), "rows"))
    replaced(model, clt, docs[:8], bt)  # warm-up
    rows.append(phase("replacement", lambda: replaced(model, clt, docs, bt), peak, args.repeats, n_tokens, "tokens"))

    base = rows[0]["seconds"]
    for row in rows[1:]:  # throughput relative to the forward over the same text
        if row["phase"] == "train":
            row["ratio"] = round(row["rows_per_s"] / rows[0]["rows_per_s"], 4)
            row["ratio_wall"] = round(row["rows_per_s_wall"] / rows[0]["rows_per_s"], 4)
        else:
            row["ratio"] = round(base / row["seconds"], 4)
    rows[0]["ratio"] = 1.0

    parameters = sum(p.numel() for p in clt.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in clt.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in clt.buffers())
    size = {
        "parameters": parameters,
        "parameters_mb": round(param_bytes / MB, 2),
        "buffers_mb": round(buffer_bytes / MB, 4),
        "gradients_mb": round(param_bytes / MB, 2),  # during training; Adam: exp_avg + exp_avg_sq
        "adam_state_mb": round(2 * param_bytes / MB, 2),
    }
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    memory = (
        "peak RSS (psutil, sampled every 5 ms) and torch.cuda.max_memory_allocated, reset per phase"
        if peak.gpu_gib is not None
        else "peak RSS (psutil, sampled every 5 ms) per phase"
    )
    save_json(
        Path(args.out) / ("bench_clt_gemma.json" if args.set else "bench_clt.json"),
        {
            "environment": environment(),
            "torch": torch.__version__,
            "device": device,
            "threads": torch.get_num_threads(),
            "model": model_source(model),
            "model_shape": {"n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model},
            "settings": {**vars(args), "train": asdict(settings)},
            "documents": len(docs),
            "tokens": n_tokens,
            "rows": n_rows,
            "forward_mode": "stop_at_layer=n_layers",
            "peak_memory": memory,
            "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB, 2),
            "transcoder": {**size, "config": asdict(config)},
            "final_l0": state.log[-1]["l0"] if state.log else None,
            "phases": rows,
        },
    )

    print(
        f"CLT on {name} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model}), {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"{len(docs)} verses ({', '.join(languages)}): {n_tokens:,} tokens, {n_rows:,} rows (no BOS); "
        f"batches of {bt} padded tokens; forward = stop_at_layer=n_layers"
    )
    print(
        f"transcoder: {args.features} features/layer, {parameters / 1e6:.2f}M parameters = {size['parameters_mb']} MB, "
        f"Adam state {size['adam_state_mb']} MB; trained {trained_rows:,} rows in {state.step} steps "
        f"({state.block + 1} block(s) read)"
    )
    gpu = peak.gpu_gib is not None
    print(
        f"{'phase':<12} {'units/s':>14} {'ratio':>8} {'seconds':>9} {'RSS GiB':>13}"
        + (f" {'GPU GiB':>8}" if gpu else "")
    )
    for r in rows:
        unit = "tok/s" if "tokens" in r else "rows/s"
        rate, ratio, seconds, label = r.get("tokens_per_s", r.get("rows_per_s")), r["ratio"], r["seconds"], r["phase"]
        lines = [(label, rate, ratio, seconds)]
        if label == "train":  # the steps (state.seconds), then the whole call
            lines = [
                ("train steps", rate, ratio, seconds),
                ("train wall", r["rows_per_s_wall"], r["ratio_wall"], r["wall_seconds"]),
            ]
        for label, rate, ratio, seconds in lines:
            print(
                f"{label:<12} {rate:>8,.0f} {unit:<6}{ratio:>7.3f}x {seconds:>9.3f} "
                f"{r['rss_before_gib']:>5}->{r['peak_rss_gib']:<6}" + (f" {r['peak_gpu_gib']:>8}" if gpu else "")
            )
    print(
        f"ratios: throughput relative to the forward over the same text (train: rows/s over the forward's "
        f"{rows[0]['rows_per_s']:,.0f} rows/s); train steps = state.seconds (block reads after the first "
        f"included), train wall = the whole train_clt call"
    )


if __name__ == "__main__":
    main()
