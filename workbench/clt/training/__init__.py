"""Training a cross-layer transcoder on a model's own MLP inputs and outputs.

[`loss`][workbench.clt.training.loss] is the training loss (reconstruction, sparsity, the dead
features' penalty), [`rows`][workbench.clt.training.rows] the blocks of activations it trains on
(streamed, or read once and reused), [`train`][workbench.clt.training.train] the training that a
checkpoint resumes exactly, and [`parallel`][workbench.clt.training.parallel] how the ranks of a ``torchrun``
split each block and each step.
"""
