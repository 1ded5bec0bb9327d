"""A Hugging Face hub name as a hooked model: from the local HF cache, or online.

TransformerLens's official names load through its own tables; any other name (XGLM, the CLT
paper's GPT-2 mixtures, a fine-tune), and an official one whose config TransformerLens cannot
build under transformers 5 (GPT-2's ``n_ctx``), is fetched as a folder and converted like one
([`load_folder`][workbench.models.folder.load_folder]). A name that is not cached needs the hub,
which is checked in seconds first ([`require_hub`][workbench.models.hub.require_hub]).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from workbench.models.folder import load_folder
from workbench.models.hub import require_hub
from workbench.models.model import Model, ModelSource, set_source, source_of
from workbench.models.specs import official_name

log = logging.getLogger(__name__)

HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
"""The files of a hub repo a model needs: config, weights, tokenizer."""


def load_hub_name(spec: str, device: str | torch.device, dtype: torch.dtype) -> Model:
    """A hub name: from the local HF cache when it is there, otherwise online (checked fast).

    Args:
        spec: A hub name or a TransformerLens alias (``gpt2-small``).
        device: Where the model goes.
        dtype: The model's dtype.

    Raises:
        OfflineError: The model is not cached and the hub cannot be reached.
    """
    official = official_name(spec)  # a bare name that is not one was refused by check_spec
    repo = official or spec
    if not _in_hf_cache(repo):
        require_hub(f"the model {repo!r}")
    model: Model | None = None
    route = "hub"
    if official is not None:
        try:
            model = HookedTransformer.from_pretrained_no_processing(repo, device=device, dtype=dtype)
        except (NotImplementedError, KeyError, AttributeError) as exc:
            log.info("TransformerLens cannot configure %s (%s); converting its folder", repo, exc)
    if model is None:
        model = load_folder(_hub_folder(repo), device, dtype)
        folder_source = source_of(model)
        route = folder_source.route.replace("local-folder", "hub") if folder_source else route
    set_source(model, ModelSource(spec=spec, name=repo, route=route, weights=f"huggingface.co/{repo}"))
    return model


def _hub_folder(repo: str) -> Path:
    """The local snapshot of a hub repo's config, weights and tokenizer (downloaded once)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, allow_patterns=HUB_FILES))


def _in_hf_cache(repo: str) -> bool:
    """Whether ``repo``'s ``config.json`` is in the local HF cache (an invalid repo id is not)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # invalid repo ids and the like: not cached
        return False
