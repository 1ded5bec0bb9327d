"""A model's layers split over several devices (TransformerLens's ``n_devices``).

For models larger than one GPU.

Block ``i`` lives on ``get_device_for_block_index(i, cfg)`` (TransformerLens's own rule: devices
``cuda:0 .. cuda:n-1`` in equal runs of layers); the embeddings go with block 0, the final norm
and the unembedding with the last block. TransformerLens's forward moves the residual stream to
each block's device with that same rule, so the split here is the one its forward expects
(TransformerLens 3.9's ``move_model_modules_to_device`` puts every block on one device, which its
forward then contradicts; hence this function).

Analyses follow the rule *a hook works on its tensor's device*: whatever a hook combines with
the activation it receives (masks, weights, a transcoder's vectors) is moved to that
activation's device, and what it returns is on it; tensors gathered from several layers are
moved to the model's first device (``cfg.device``) before they meet. On CPUs every block's
device is the CPU, which is how the code path is tested without GPUs.
"""

from __future__ import annotations

import torch
from transformer_lens.utilities.multi_gpu import get_device_for_block_index

from workbench.errors import WorkbenchError
from workbench.models.model import Model


def block_device(model: Model, layer: int) -> torch.device:
    """The device that holds block ``layer`` (and where its hooks' activations are)."""
    return next(model.blocks[layer].parameters()).device


def check_devices(device: str, n_devices: int) -> None:
    """Refuse a split the machine cannot hold (before the model loads).

    Raises:
        WorkbenchError: ``n_devices`` is below 1, or more GPUs from ``device`` on than the machine
            has.
    """
    if n_devices < 1:
        raise WorkbenchError(f"--n-devices must be at least 1; got {n_devices}.")
    kind = torch.device(device)
    if kind.type == "cuda" and (kind.index or 0) + n_devices > torch.cuda.device_count():
        raise WorkbenchError(
            f"--n-devices {n_devices} from {device} needs {(kind.index or 0) + n_devices} GPUs; "
            f"this machine has {torch.cuda.device_count()}. Lower --n-devices."
        )


def split_layers(model: Model, device: str, n_devices: int) -> Model:
    """Put ``model``'s blocks on ``n_devices`` devices starting at ``device``.

    Returns:
        ``model`` itself, moved in place.

    Raises:
        WorkbenchError: The machine cannot hold the split (see
            [`check_devices`][workbench.models.devices.check_devices]).
    """
    check_devices(device, n_devices)
    model.cfg.device, model.cfg.n_devices = str(device), n_devices
    first = _rule(0, model)
    last = _rule(model.cfg.n_layers - 1, model)
    for name in ("embed", "hook_embed", "pos_embed", "hook_pos_embed"):
        if hasattr(model, name):
            getattr(model, name).to(first)
    for i, block in enumerate(model.blocks):
        block.to(_rule(i, model))
    for name in ("ln_final", "unembed"):
        if hasattr(model, name):
            getattr(model, name).to(last)
    return model


def _rule(index: int, model: Model) -> torch.device:
    """TransformerLens's device for block ``index`` of ``model`` (from its config's device and ``n_devices``)."""
    return get_device_for_block_index(
        index,
        model.cfg,  # pyright: ignore[reportArgumentType]  # reads only device, n_layers, n_devices: any config has them
    )


def devices_of(model: Model) -> list[str]:
    """Each block's device, in layer order (for the manifest and the tests)."""
    return [str(block_device(model, layer)) for layer in range(model.cfg.n_layers)]


__all__ = ["block_device", "check_devices", "devices_of", "split_layers"]
