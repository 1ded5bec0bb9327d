"""Training a cross-layer transcoder on a model's own MLP inputs and outputs.

[`loss`][workbench.clt.training.loss] is the training loss (reconstruction, sparsity, the dead
features' penalty), [`train`][workbench.clt.training.train] the streamed training that a checkpoint
resumes exactly, and [`parallel`][workbench.clt.training.parallel] how the ranks of a ``torchrun``
split each block and each step.
"""
