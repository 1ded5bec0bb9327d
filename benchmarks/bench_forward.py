"""Forward-pass benchmark of the default model: throughput, model preparation, peak memory.

Throughput is reported in tokens/s and as a ratio to the baseline measured in the same run
(batch size 1, TransformerLens's full forward with logits), so figures from different machines
compare by ratio. Modes: the full forward, the forward without the 262k-token unembedding, and
the workbench's chunked next-token loss (norm + unembedding + cross-entropy a chunk at a time).

Usage: ``python benchmarks/bench_forward.py [--skip-cold] [--device cpu] [--out results/bench]``.

Every benchmark takes ``--device`` (default ``cpu``): the model and the tokens run there, timings
wait for the device to finish, and on a GPU its peak allocated memory is recorded as well.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402

from workbench.data.corpus import BibleCorpus  # noqa: E402
from workbench.lens.readout import next_token_losses  # noqa: E402
from workbench.models.gemma import prepare_gemma  # noqa: E402
from workbench.models.loading import load_model  # noqa: E402
from workbench.runs.results import environment, save_json  # noqa: E402


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device`` option every benchmark shares."""
    parser.add_argument(
        "--device", default="cpu", help="where the model and the tokens run: cpu (default), cuda, cuda:1, ..."
    )


def synchronize(device: str | torch.device) -> None:
    """Wait until the work queued on ``device`` is done, so that a wall-clock time includes it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 5 ms), and on a
    CUDA ``device`` the peak GPU memory allocated by torch as well (:attr:`gpu_gib`)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.peak = 0
        self.gpu_peak: int | None = None
        self.device = torch.device(device)
        self._stop = threading.Event()

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.005)

    @contextmanager
    def measure(self):
        self.peak = psutil.Process().memory_info().rss
        cuda = self.device.type == "cuda"
        if cuda:
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._stop.clear()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            if cuda:
                synchronize(self.device)
                self.gpu_peak = torch.cuda.max_memory_allocated(self.device)
            self._stop.set()
            thread.join()

    @property
    def gib(self) -> float:
        return round(self.peak / 2**30, 2)

    @property
    def gpu_gib(self) -> float | None:
        """Peak GPU memory allocated during the last block (GiB); None off CUDA."""
        return None if self.gpu_peak is None else round(self.gpu_peak / 2**30, 2)

    def record(self, row: dict, key: str = "peak_rss_gib") -> dict:
        """Add the last block's peak memory to ``row`` (the GPU's under ``peak_gpu_gib``)."""
        row[key] = self.gib
        if self.gpu_gib is not None:
            row[key.replace("rss", "gpu")] = self.gpu_gib
        return row


def real_batch(model, batch_size: int, seq_len: int) -> torch.Tensor:
    """``batch_size`` rows of real multilingual verse tokens, cut to ``seq_len``, on the model's device."""
    corpus = BibleCorpus()
    langs = ["en", "de", "zh", "ar", "hi", "ru", "sw", "ja"]
    ids = corpus.sample_ids(langs, 8, "analysis", seed=0)
    rows = []
    for i in range(batch_size):
        lang = langs[i % len(langs)]
        text = " ".join(corpus.parallel([lang], ids)[lang]["text"])
        rows.append(model.to_tokens(text)[0, :seq_len])
    return torch.stack(rows).to(model.cfg.device)


MODES = {
    "forward (logits)": lambda model, tokens: model(tokens),
    "forward, no unembedding": lambda model, tokens: model(tokens, stop_at_layer=model.cfg.n_layers),
    "next-token loss (chunked readout)": next_token_losses,
}


@torch.inference_mode()
def throughput(model, tokens: torch.Tensor, mode: str, repeats: int) -> float:
    """Tokens per second of one mode (median of ``repeats`` after one warm-up)."""
    step = MODES[mode]
    step(model, tokens)
    synchronize(tokens.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(model, tokens)
        synchronize(tokens.device)
        times.append(time.perf_counter() - start)
    times.sort()
    return tokens.numel() / times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold model build (~1.5 min)")
    add_device_argument(parser)
    args = parser.parse_args()
    peak = PeakRSS()  # the cold build and the load run on the CPU
    results: dict = {
        "environment": environment(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "seq_len": args.seq_len,
    }

    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp, peak.measure():
            start = time.perf_counter()
            prepare_gemma(Path(tmp), force=True)
            results["prepare_cold_s"] = round(time.perf_counter() - start, 1)
        results["prepare_cold_peak_rss_gib"] = peak.gib

    with peak.measure():
        start = time.perf_counter()
        model = load_model("gemma-3-270m", device=args.device)
        synchronize(args.device)
        results["load_warm_s"] = round(time.perf_counter() - start, 1)
    results["load_warm_peak_rss_gib"] = peak.gib

    peak = PeakRSS(args.device)
    rows = []
    for batch_size in (1, 8):
        tokens = real_batch(model, batch_size, args.seq_len)
        for mode in MODES:
            with peak.measure():
                tps = throughput(model, tokens, mode, args.repeats)
            rows.append(peak.record({"batch": batch_size, "mode": mode, "tokens_per_s": round(tps, 1)}))
    baseline = rows[0]["tokens_per_s"]  # batch 1, full forward with logits
    for row in rows:
        row["ratio"] = round(row["tokens_per_s"] / baseline, 2)
    results["forward"] = rows

    save_json(Path(args.out) / "bench_forward.json", results)
    print(f"device {args.device}, threads {results['threads']}, sequence length {args.seq_len}")
    for key in ("prepare_cold_s", "prepare_cold_peak_rss_gib", "load_warm_s", "load_warm_peak_rss_gib"):
        if key in results:
            print(f"{key:<28} {results[key]}")
    print(f"{'batch':>5} {'mode':<36} {'tok/s':>9} {'ratio':>6} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['batch']:>5} {r['mode']:<36} {r['tokens_per_s']:>9} {r['ratio']:>6} {r['peak_rss_gib']:>9}")


if __name__ == "__main__":
    main()
