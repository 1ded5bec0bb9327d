"""Result files: JSON for tables and metadata, ``.npz`` for arrays, and the run manifest.

Every result folder carries a manifest saying what made it: model (and weights build), corpus
(and translations), languages, settings, the workbench and library versions, and the time.
Files are written atomically (temporary file, then rename), so an interrupted run never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
_TRACKED_PACKAGES = ("torch", "transformer-lens", "transformers", "datasets", "numpy", "plotly")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays by name into one ``.npz`` (no pickled objects: plain numeric arrays only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def environment() -> dict[str, str]:
    """Versions of the workbench, Python and the libraries that shape the numbers."""
    from workbench import __version__

    env = {"workbench": __version__, "python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = "not installed"
    return env


def make_manifest(model: dict, corpus: dict, languages: list[str], settings: dict) -> dict:
    """The manifest of a run: what made the results in its folder."""
    return {
        "model": model,
        "corpus": corpus,
        "languages": list(languages),
        "settings": dict(settings),
        "versions": environment(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
