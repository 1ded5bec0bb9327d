"""Cross-layer transcoders (arXiv 2511.10840): sparse features that replace a model's MLPs.

[`transcoder`][workbench.clt.transcoder] holds the transcoder itself (encoders, cross-layer
decoders), [`jumprelu`][workbench.clt.jumprelu] its features' activation and
[`loss`][workbench.clt.loss] its training loss; [`activations`][workbench.clt.activations] reads
what it is trained on, [`train`][workbench.clt.train] trains it (streamed, resumable) and
[`quality`][workbench.clt.quality] measures it (FVU, L0, dead features, the replacement model's
loss). ``workbench.clt.formats`` reads and writes transcoder files: ours, SAELens's (Gemma Scope
2's too), the CLT paper's (featflow) and circuit-tracer's.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.clt.loss import clt_loss
    from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

__all__ = ["CLTConfig", "CrossLayerTranscoder", "clt_loss"]

_EXPORTS = {"CLTConfig": "transcoder", "CrossLayerTranscoder": "transcoder", "clt_loss": "loss"}
# Loaded on first use: the package itself imports no torch, so options defined in it
# (``graph_options``) are read by the command line at once.


def __getattr__(name: str) -> object:
    """The public names, each imported on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
