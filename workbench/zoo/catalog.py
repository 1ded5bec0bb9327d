"""Where zoo models live, what is trained, and the presets that reproduce the papers' designs.

A zoo model is a folder ``<zoo>/<name>/`` (``<zoo>`` is ``$WORKBENCH_ZOO``, else
``$WORKBENCH_CACHE/zoo``): a standard Hugging Face folder plus ``zoo.json``, its manifest.
``--model zoo:NAME`` loads it in every analysis. A run in progress lives in ``<zoo>/.<name>.partial/`` until it finishes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = "zoo.json"
ZOO_FORMAT = 1
TOKENIZER_LANGUAGES = ("en", "fr", "de", "ar", "zh")  # the third paper's five languages


def zoo_root() -> Path:
    """Where ``zoo:NAME`` is looked up: ``$WORKBENCH_ZOO`` (e.g. a lab's shared zoo), else the cache's ``zoo``."""
    from workbench.models import cache_root

    return Path(os.environ["WORKBENCH_ZOO"]) if os.environ.get("WORKBENCH_ZOO") else cache_root() / "zoo"


def trained(zoo: Path | None = None) -> dict[str, dict]:
    """name -> manifest of every finished zoo model, by name."""
    zoo = zoo or zoo_root()
    if not zoo.is_dir():
        return {}
    found = {}
    for path in sorted(zoo.glob(f"*/{MANIFEST}")):
        if not path.parent.name.startswith("."):
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def zoo_folder(name: str, zoo: Path | None = None) -> Path:
    """The folder of the trained zoo model ``name`` (an error lists the trained ones)."""
    from workbench.errors import UnknownModelError

    zoo = zoo or zoo_root()
    folder = zoo / name
    if not (folder / MANIFEST).exists():
        names = ", ".join(trained(zoo)) or "none yet"
        raise UnknownModelError(f"No zoo model {name!r} in {zoo} (trained: {names}). Train it with "
                                f"'workbench zoo train {name} --mixture ...' or '--preset mixtures'.")  # fmt: skip
    return folder


def _rest(english: float) -> str:
    others = [lang for lang in TOKENIZER_LANGUAGES if lang != "en"]
    share = (1 - english) / len(others)
    return ",".join([f"en={english:g}", *(f"{lang}={share:g}" for lang in others)])


PRESETS: dict[str, dict[str, dict]] = {
    # English share 90/70/50/20/0 %, the rest split evenly over fr, de, ar, zh: same size, budget, seed.
    "mixtures": {f"mix-en{round(e * 100)}": {"mixture": _rest(e), "tokenizer_languages": TOKENIZER_LANGUAGES}
                 for e in (0.9, 0.7, 0.5, 0.2, 0.0)},
    # One mixture at three depths: over-layerization (2404.13855) across a family.
    "depths": {f"depth-{n}": {"mixture": _rest(0.5), "tokenizer_languages": TOKENIZER_LANGUAGES, "layers": n}
               for n in (2, 4, 8)},
}  # fmt: skip
