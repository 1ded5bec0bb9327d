"""``zoo:NAME``: a model trained here on a language mixture ([`workbench.zoo`][workbench.zoo]).

A trained zoo model is a Hugging Face folder plus its manifest, ``zoo.json``
([`workbench.models.catalog`][workbench.models.catalog]); it loads like any folder, and its source
records the mixture it was trained on.
"""

from __future__ import annotations

import json

import torch

from workbench.models.catalog import MANIFEST, zoo_folder
from workbench.models.folder import load_folder
from workbench.models.model import Model, ModelSource, set_source
from workbench.models.specs import ZOO_PREFIX


def load_zoo(spec: str, device: str | torch.device, dtype: torch.dtype) -> Model:
    """A trained zoo model's folder, with its manifest's mixture in the source.

    Args:
        spec: ``zoo:NAME``.
        device: Where the model goes.
        dtype: The model's dtype.
    """
    folder = zoo_folder(spec[len(ZOO_PREFIX) :])
    model = load_folder(folder, device, dtype)
    info = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    set_source(
        model,
        ModelSource(
            spec=spec,
            name=info["name"],
            route="zoo",
            weights=str(folder),
            details={
                "mixture": info["mixture"],
                "tokens": info["tokens"]["total"],
                "seed": info["options"]["seed"],
                "layers": info["options"]["layers"],
                "heldout_loss": info["heldout_loss"],
            },
        ),
    )
    return model
