"""A zoo run's work folder and checkpoint: how an interrupted run resumes exactly.

A run works in ``<zoo>/.NAME.partial/`` and writes a checkpoint there every ``checkpoint_every``
steps: weights, optimiser state, step, losses and seconds, under the run's
[`run_fingerprint`][workbench.zoo.checkpoint.run_fingerprint]. Training is a pure function of its
settings, so a run resumed from a checkpoint with the same fingerprint continues bit for bit where
an uninterrupted one would be; one with another fingerprint is refused, never mixed in.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from workbench.errors import WorkbenchError
from workbench.models.catalog import MANIFEST
from workbench.zoo.options import ZooOptions

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

CHECKPOINT = "checkpoint.pt"
"""A run's checkpoint, in its work folder ``<zoo>/.NAME.partial/``."""


class ZooExistsError(WorkbenchError, FileExistsError):
    """A zoo name that is taken (by a trained model, or by a run with other settings)."""


def check_name(name: str, zoo: Path, force: bool) -> tuple[Path, Path]:
    """``(folder, work folder)`` of ``name``.

    A trained model of that name is refused unless ``force`` (which also drops an unfinished run's
    checkpoint).
    """
    if not name or "/" in name or name.startswith("."):
        raise WorkbenchError(f"Zoo name {name!r} must be a plain folder name, e.g. mix-en50.")
    folder, work = zoo / name, zoo / f".{name}.partial"
    if force:
        shutil.rmtree(work, ignore_errors=True)
    elif (folder / MANIFEST).exists():
        raise ZooExistsError(
            f"Zoo model {name!r} exists ({folder}); pass --force to train it again, or pick another name."
        )
    work.mkdir(parents=True, exist_ok=True)
    return folder, work


def run_fingerprint(options: ZooOptions, base: dict | None) -> str:
    """What a checkpoint must match to be resumed: the settings, and a fine-tune's base weights."""
    return options.weights_fingerprint() + (f"+{base['weights_sha256'][:12]}" if base else "")


def save_checkpoint(
    work: Path, fingerprint: str, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Weights, optimiser state, step and losses, written atomically (tensors and numbers only).

    Saved under the run's [`run_fingerprint`][workbench.zoo.checkpoint.run_fingerprint].
    """
    partial = work / f"{CHECKPOINT}.tmp"
    torch.save(
        {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(), **state}, partial
    )
    partial.replace(work / CHECKPOINT)


def resume(
    work: Path, options: ZooOptions, fingerprint: str, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """The state to start from: a checkpoint of a run with the same settings (and base weights), or step 0."""
    path = work / CHECKPOINT
    if not path.exists():
        return {"step": 0, "losses": [], "seconds": 0.0}
    saved = torch.load(path, map_location=options.device, weights_only=True)
    if saved["fingerprint"] != fingerprint:
        raise ZooExistsError(
            f"{work} holds an unfinished run with other settings (or another base's weights); "
            "re-run with those settings to resume it, or pass --force to start over."
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return {"step": saved["step"], "losses": list(saved["losses"]), "seconds": saved["seconds"]}


__all__ = [
    "CHECKPOINT",
    "ZooExistsError",
    "check_name",
    "resume",
    "run_fingerprint",
    "save_checkpoint",
]
