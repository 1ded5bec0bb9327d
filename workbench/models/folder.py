"""A local Hugging Face folder (``config.json`` + weights + tokenizer) as a hooked model.

The folder is converted to a ``HookedTransformer``
([`hooked_from_hf`][workbench.models.convert.hooked_from_hf]); an architecture it cannot convert, or
converts with numbers other than the HF model's, is loaded through ``TransformerBridge``
([`load_bridge`][workbench.models.convert.load_bridge]) and its route records why.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from workbench.errors import UnknownModelError, UnsupportedArchitectureError
from workbench.models.convert import hooked_from_hf, load_bridge
from workbench.models.model import Model, ModelSource, set_source

log = logging.getLogger(__name__)


def load_folder(folder: Path, device: str | torch.device, dtype: torch.dtype) -> Model:
    """The model saved in ``folder``, converted natively or else bridged.

    Args:
        folder: What ``save_pretrained`` wrote: ``config.json``, the weights, the tokenizer.
        device: Where the model goes.
        dtype: The model's dtype.

    Raises:
        UnsupportedArchitectureError: ``transformers`` cannot load the folder as a causal language
            model, or neither ``HookedTransformer`` nor ``TransformerBridge`` can load it.
        UnknownModelError: The folder has no loadable tokenizer.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(str(folder))
    architecture = (getattr(config, "architectures", None) or ["?"])[0]
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    except ValueError as exc:
        raise UnsupportedArchitectureError(
            f"{folder} holds a {architecture!r}, which transformers cannot load as a causal "
            f"language model ({exc}). The workbench analyses decoder language models."
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise UnknownModelError(
            f"{folder} has no loadable tokenizer ({exc}); save it beside the model with "
            "tokenizer.save_pretrained(folder)."
        ) from exc
    source = ModelSource(
        spec=str(folder),
        name=folder.name,
        route="local-folder",
        weights=str(folder),
        details={"architecture": architecture},
    )
    model: Model
    try:
        # TransformerLens guesses the architecture from words in the path ("llama", "gemma")
        # before reading config.json; a neutral link name makes it read the config.
        with tempfile.TemporaryDirectory() as tmp:
            link = Path(tmp) / "model"
            link.symlink_to(folder.resolve(), target_is_directory=True)
            model = hooked_from_hf(str(link), hf_model, tokenizer, device, dtype)
    except (NotImplementedError, KeyError, AttributeError, UnsupportedArchitectureError) as exc:
        log.warning("HookedTransformer cannot convert %s (%s); using TransformerBridge", architecture, exc)
        model = load_bridge(str(folder), tokenizer, device, dtype, architecture)
        source.route += "+bridge"
        source.details["bridged_because"] = str(exc)
    set_source(model, source)
    return model
