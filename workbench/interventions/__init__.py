"""Interventions on neuron sets, and what they are measured with: shared measurements (loss,
accuracy, language fidelity, continuations), deactivation, neuron fine-tuning, enhancement,
the paper's downstream tasks, perplexity.

Layer: beside :mod:`workbench.clt`, above :mod:`workbench.neurons` and :mod:`workbench.lens`.
"""
