"""Cross-layer transcoders (arXiv 2511.10840): sparse features that replace a model's MLPs.

[`workbench.clt.transcoder`][workbench.clt.transcoder] holds the transcoder itself (encoders, JumpReLU, cross-layer
decoders, the loss); [`activations`][workbench.clt.activations] reads what it is trained on,
[`train`][workbench.clt.train] trains it (streamed, resumable) and [`quality`][workbench.clt.quality]
measures it (FVU, L0, dead features, the replacement model's loss); [`saelens`][workbench.clt.saelens]
exports a per-layer one to SAELens's transcoder folders and loads those (Gemma Scope 2's too);
[`checkpoints`][workbench.clt.checkpoints] reads and writes the CLT paper's (featflow) and circuit-tracer's.
"""

from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder, clt_loss

__all__ = ["CLTConfig", "CrossLayerTranscoder", "clt_loss"]
