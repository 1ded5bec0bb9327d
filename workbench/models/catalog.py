"""Where the workbench keeps models: the cache root, and where trained zoo models are found.

A zoo model is a folder ``<zoo>/<name>/`` (``<zoo>`` is ``$WORKBENCH_ZOO``, else
``$WORKBENCH_CACHE/zoo``): a standard Hugging Face folder plus ``zoo.json``, its manifest.
``--model zoo:NAME`` loads it in every analysis. A run in progress lives in
``<zoo>/.<name>.partial/`` until it finishes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from workbench.errors import UnknownModelError

MANIFEST = "zoo.json"
"""The manifest file of a trained zoo model, in its folder."""
ZOO_FORMAT = 1
"""The version of the zoo folder layout."""
CACHE_ENV = "WORKBENCH_CACHE"
"""The environment variable that moves the workbench cache."""


def cache_root() -> Path:
    """The workbench cache folder: ``$WORKBENCH_CACHE`` or ``~/.cache/workbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "workbench")


def zoo_root() -> Path:
    """Where ``zoo:NAME`` is looked up: ``$WORKBENCH_ZOO`` (e.g. a lab's shared zoo), else the cache's ``zoo``."""
    return Path(os.environ["WORKBENCH_ZOO"]) if os.environ.get("WORKBENCH_ZOO") else cache_root() / "zoo"


def trained(zoo: Path | None = None) -> dict[str, dict[str, Any]]:
    """Name -> manifest of every finished zoo model, by name (``zoo``: default the zoo root)."""
    zoo = zoo or zoo_root()
    if not zoo.is_dir():
        return {}
    found = {}
    for path in sorted(zoo.glob(f"*/{MANIFEST}")):
        if not path.parent.name.startswith("."):
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def zoo_folder(name: str, zoo: Path | None = None) -> Path:
    """The folder of the trained zoo model ``name``.

    Raises:
        UnknownModelError: No such model is trained; the message lists the trained ones.
    """
    zoo = zoo or zoo_root()
    folder = zoo / name
    if not (folder / MANIFEST).exists():
        names = ", ".join(trained(zoo)) or "none yet"
        raise UnknownModelError(
            f"No zoo model {name!r} in {zoo} (trained: {names}). Train it with "
            f"'workbench zoo train {name} --mixture ...' or '--preset mixtures'."
        )
    return folder
