"""The model every analysis takes, and what the workbench knows about it.

``Model`` is what [`load_model`][workbench.models.loading.load_model] returns: a
``HookedTransformer``, or a ``TransformerBridge`` in compatibility mode for architectures
``HookedTransformer`` cannot convert. Both expose the same hook names
(``blocks.{i}.mlp.hook_post``, ...), which is all most analyses touch; code that needs
``HookedTransformer``'s own weights or forward checks with ``isinstance`` first.

Where a model came from (its [`ModelSource`][workbench.models.model.ModelSource]) is kept beside
the model, not attached to it: [`source_of`][workbench.models.model.source_of] reads it and
[`set_source`][workbench.models.model.set_source] records it. A model built by hand has none
([`model_source`][workbench.models.model.model_source] then reads it as an ``unknown`` route).
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from torch import nn
    from transformer_lens import HookedTransformer
    from transformer_lens.model_bridge import TransformerBridge

Model: TypeAlias = "HookedTransformer | TransformerBridge"
"""A hooked model: a ``HookedTransformer``, or a ``TransformerBridge`` in compatibility mode."""


@dataclass
class ModelSource:
    """Where a loaded model came from, as recorded in every result's manifest.

    Attributes:
        spec: The model spec the user gave (``gemma-3-270m``, a folder, a hub name, ``zoo:NAME``).
        name: The model's name (the official hub name where one is known).
        route: How it loaded: ``embedded-gguf``, ``tiny``, ``zoo``, ``local-folder`` or ``hub``,
            with ``+bridge`` when it runs through ``TransformerBridge``.
        weights: Where the weights came from, in words.
        details: Facts recorded along the way (dtype, load time, devices, conversion notes).
    """

    spec: str
    name: str
    route: str
    weights: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The source as a plain dict (JSON-ready)."""
        return asdict(self)


_SOURCES: weakref.WeakKeyDictionary[nn.Module, ModelSource] = weakref.WeakKeyDictionary()


def set_source(model: Model, source: ModelSource) -> None:
    """Record where ``model`` came from (the loaders call this; the record lives as long as the model)."""
    _SOURCES[model] = source


def source_of(model: Model) -> ModelSource | None:
    """Where ``model`` came from, or None for a model the workbench did not load."""
    return _SOURCES.get(model)


def model_source(model: Model) -> dict[str, Any]:
    """Where ``model`` came from as a dict; a model the workbench did not load reads as ``unknown``."""
    source = source_of(model)
    if source is None:
        return {"spec": getattr(model.cfg, "model_name", "unknown"), "route": "unknown"}
    return source.to_dict()


def model_device(model: Model) -> str:
    """The device the model's inputs go to: its config's (the first block's, when layers are split).

    Every model the workbench loads names one; a config without one is an error, not a guess.
    """
    device = model.cfg.device
    if device is None:
        raise ValueError("the model's config names no device: build it with cfg.device set, or load it with load_model")
    return str(device)
