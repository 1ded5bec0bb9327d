"""The workbench's own transcoder folder: ``config.json`` and ``clt.safetensors``.

``config.json`` is the [`CLTConfig`][workbench.clt.transcoder.CLTConfig] as a JSON object (its
fields by name; ``layers`` a list); ``clt.safetensors`` is the module's state dict as it is:
``W_enc [L, d, F]``, ``b_enc``, ``log_threshold [L, F]``, ``W_dec.{l} [targets(l), F, d]``,
``b_dec [L, d]`` and the scales ``in_scale``, ``out_scale [L]``, in the transcoder's own dtype.
[`CrossLayerTranscoder.save`][workbench.clt.transcoder.CrossLayerTranscoder.save] writes them and
[`CrossLayerTranscoder.load`][workbench.clt.transcoder.CrossLayerTranscoder.load] reads them back.
"""

from __future__ import annotations

from pathlib import Path

from workbench.clt.transcoder import CONFIG_FILE, WEIGHTS_FILE, CrossLayerTranscoder


def recognises(folder: Path) -> bool:
    """Whether ``folder`` holds our two files."""
    return all((folder / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))


def save(clt: CrossLayerTranscoder, folder: Path | str) -> Path:
    """Write ``clt`` to ``folder`` (made if missing); returns the folder."""
    clt.save(folder)
    return Path(folder)


def load(folder: Path | str, device: str = "cpu") -> CrossLayerTranscoder:
    """The transcoder saved in ``folder``, on ``device``."""
    return CrossLayerTranscoder.load(folder, device)


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "load", "recognises", "save"]
