"""Memory budget: each analysis's peak memory as a multiple of the model's weight bytes, on randomly
initialised models shaped like real ones at three sizes, in half precision.

The shapes (``SIZES``) are GPT-2 small (124M), Qwen2-0.5B and TinyLlama-1.1B, each built from
its own ``transformers`` config class with the library's default initialisation, saved once as a
folder (bfloat16 safetensors and the byte tokenizer, under ``--models``) and loaded the way a
researcher's download is: ``--model FOLDER --dtype bfloat16``. Random weights cost what trained
ones cost; the byte tokenizer's ids are a subset of every vocabulary, and the unembedding keeps
the real vocabulary's width, so the per-vocabulary terms are the real ones.

Each (size, analysis) runs in a fresh process (peaks do not leak between rows): the model is
loaded, then the peak is reset and the analysis runs through the job (with what it requires) on a
few verses of two languages. Measured:

* CPU: the resident set's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``
  after loading), exact rather than sampled; ``extra`` is that peak minus the resident size after
  loading, i.e. what the analysis adds to holding the model;
* CUDA: ``torch.cuda.max_memory_allocated`` (reset after loading), ``extra`` the same difference.

``multiple = extra / weight bytes`` is the number to read: it must not grow with the model's size.
Load peaks are given too (HF model and hooked model coexist while converting). Results go to
``bench_memory.json`` with the environment; ``--sizes``, ``--analyses``, ``--batch-tokens`` and
``--device`` choose the rows.

Usage: ``python benchmarks/bench_memory.py [--sizes gpt2-124m,qwen2-0.5b,llama-1.1b]
[--analyses loss,lens,...] [--batch-tokens 512] [--device cpu] [--out results/bench]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GIB = 2**30

# Shapes of real models (their config.json values); transformers builds them with its own init.
SIZES: dict[str, tuple[str, str, dict]] = {
    "gpt2-124m": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12},
    ),
    "qwen2-0.5b": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {
            "vocab_size": 151936,
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": True,
            "rope_theta": 1_000_000.0,
        },
    ),
    "llama-1.1b": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "vocab_size": 32000,
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "max_position_embeddings": 2048,
        },
    ),
}
TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}

# Each analysis at a few verses (memory depends on the batch, not on how many batches run).
SMALL_TRANSCODER = (
    "--clt-train-features 256 --clt-train-documents 8 --clt-train-tokens 512 --clt-train-batch 256 "
    "--clt-train-heldout 4"
)
ANALYSES: dict[str, list[str]] = {
    name: flags.split()
    for name, flags in {
        "loss": "--loss-documents 8",
        "lens": "--lens-documents 4 --lens-per-document 4 --lens-accuracy-documents 4",
        "probe": "--probe-documents 8 --probe-heldout 4 --probe-tokens 200 --probe-steps 10",
        "plnd": "--plnd-documents 8",
        "ablate": "--plnd-documents 8 --ablate-documents 4 --ablate-prompt-tokens 8 --ablate-new-tokens 4",
        "finetune": (
            "--plnd-documents 8 --finetune-sizes 64 --finetune-random-size 0 --finetune-documents 4 --finetune-epochs 1"
        ),
        "ffn": "--ffn-documents 8",
        "clt-train": f"{SMALL_TRANSCODER} --clt-train-block-documents 16",
        "clt-steer": (
            f"{SMALL_TRANSCODER} --clt-features-documents 8 --clt-steer-prompts 2 --clt-steer-new-tokens 4 "
            "--clt-steer-strengths 0,4 --clt-steer-targets de"
        ),
        "clt-graph": f"{SMALL_TRANSCODER} --clt-graph-tasks weekday --clt-graph-max-features 64",
    }.items()
}


def build(size: str, root: Path) -> Path:
    """The random model of ``size`` as a bfloat16 folder under ``root`` (built once)."""
    folder = root / size
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    from workbench.models.tiny import byte_tokenizer

    config_class, model_class, settings = SIZES[size]
    config = getattr(transformers, config_class)(**TOKENS, **settings)
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).to(torch.bfloat16)
    partial = root / f"{size}.partial"
    model.save_pretrained(partial)
    byte_tokenizer().save_pretrained(partial)
    partial.rename(folder)
    return folder


def _status(key: str) -> int:
    """A ``/proc/self/status`` size in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(folder: Path, analysis: str, batch_tokens: int, device: str) -> dict:
    """One row, in this process: load, reset the peak, run ``analysis`` through the job."""
    import torch

    from workbench.models.loading import load_model
    from workbench.runs import job

    cuda = device.startswith("cuda")
    started = time.perf_counter()
    model = load_model(str(folder), device=device, dtype=torch.bfloat16)
    load_seconds = time.perf_counter() - started
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    gc.collect()
    load_peak = torch.cuda.max_memory_allocated() if cuda else _status("VmHWM")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        held = _status("VmRSS")
    job.load_run_model = lambda *args, **kwargs: model
    run_options, analyses = _parse(folder, analysis, batch_tokens, device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        job.run(run_options, analyses, Path(out), show_progress=False)
    peak = torch.cuda.max_memory_allocated() if cuda else _status("VmHWM")
    return {
        "analysis": analysis,
        "weights_gib": round(weights / GIB, 3),
        "n_params": sum(p.numel() for p in model.parameters()),
        "d_vocab": model.cfg.d_vocab,
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
        "load_peak_gib": round(load_peak / GIB, 3),
        "held_gib": round(held / GIB, 3),
        "peak_gib": round(peak / GIB, 3),
        "extra_gib": round((peak - held) / GIB, 3),
        "multiple": round((peak - held) / weights, 3),
        "total_multiple": round(peak / weights, 3),
        "load_seconds": round(load_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _parse(folder: Path, analysis: str, batch_tokens: int, device: str):
    """The run's options and the analyses, from the command line users would type."""
    from workbench.cli import build_parser
    from workbench.cli.flags import analyses_from, options_from
    from workbench.runs.options import RunOptions

    argv = [
        "run",
        "--model",
        str(folder),
        "--dtype",
        "bfloat16",
        "--device",
        device,
        "--languages",
        "en,de",
        "--batch-tokens",
        str(batch_tokens),
        "--analyses",
        analysis,
        *ANALYSES[analysis],
    ]
    args = build_parser().parse_args(argv)
    return options_from(args, RunOptions, None), analyses_from(args, [analysis], None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--analyses", default=",".join(ANALYSES), help=f"comma-separated, of {', '.join(ANALYSES)}")
    parser.add_argument("--batch-tokens", type=int, default=512, help="the run's padded tokens per forward batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--models",
        default=str(Path.home() / ".cache" / "workbench" / "bench-models"),
        help="where the random models are saved (once)",
    )
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--one", nargs=2, metavar=("FOLDER", "ANALYSIS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.one[0]), args.one[1], args.batch_tokens, args.device)))
        return
    from workbench.runs.results import environment, save_json

    root = Path(args.models)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        folder = build(size, root)
        for analysis in args.analyses.split(","):
            command = [
                sys.executable,
                __file__,
                "--one",
                str(folder),
                analysis,
                "--batch-tokens",
                str(args.batch_tokens),
                "--device",
                args.device,
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{size} {analysis}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = {"size": size, "batch_tokens": args.batch_tokens, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(
                f"{size:11s} {analysis:10s} weights {row['weights_gib']:6.2f} GiB  extra {row['extra_gib']:6.2f} "
                f"GiB  x{row['multiple']:.2f}  (peak {row['peak_gib']:.2f}, load peak {row['load_peak_gib']:.2f}, "
                f"{row['seconds']:.0f} s)",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_memory.json" if args.batch_tokens == 512 else f"bench_memory_{args.batch_tokens}.json"
    save_json(out / name, {"rows": rows, "device": args.device, "environment": environment()})


if __name__ == "__main__":
    main()
