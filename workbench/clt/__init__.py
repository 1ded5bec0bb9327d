"""Cross-layer transcoders (arXiv 2511.10840): sparse features that replace a model's MLPs.

The transcoder and what every part of the package needs of it sit at the top:
[`transcoder`][workbench.clt.transcoder] holds the transcoder itself (encoders, cross-layer
decoders), [`jumprelu`][workbench.clt.jumprelu] its features' activation,
[`activations`][workbench.clt.activations] reads what it reads (the model's MLP inputs and outputs),
[`skip`][workbench.clt.skip] fits a skip transcoder's affine skip in closed form, and
[`quality`][workbench.clt.quality] measures how well it stands in for the MLPs (FVU, L0, dead
features, the replacement model's loss). Around them, one sub-package per use, each importing only
the top and the sub-packages listed before it:

* [`formats`][workbench.clt.formats]: transcoder files, ours and other tools' (SAELens's, the CLT
  paper's featflow, circuit-tracer's and Gemma Scope 2's);
* [`training`][workbench.clt.training]: the training loss and the streamed, resumable training,
  data-parallel under ``torchrun`` too;
* [`features`][workbench.clt.features]: which features carry language identity, their cards and
  layers, and model diffing through the features;
* [`steering`][workbench.clt.steering]: steering the output language through features;
* [`graphs`][workbench.clt.graphs]: attribution graphs on the local replacement model, their
  pruning, summaries, views and export;
* [`runs`][workbench.clt.runs]: what the ``clt-*`` analyses keep in a run (its transcoder, the
  measures per language), and ``clt-compare``'s transcoders side by side.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.clt.training.loss import clt_loss
    from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

__all__ = ["CLTConfig", "CrossLayerTranscoder", "clt_loss"]

_EXPORTS = {"CLTConfig": "transcoder", "CrossLayerTranscoder": "transcoder", "clt_loss": "training.loss"}
# Loaded on first use: the package itself imports no torch, so options defined in it
# (``graphs.options``) are read by the command line at once.


def __getattr__(name: str) -> object:
    """The public names, each imported on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
