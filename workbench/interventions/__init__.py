"""Interventions on neuron sets, and what they are measured with.

Shared measurements (loss, accuracy, language fidelity, continuations), deactivation, neuron
fine-tuning, enhancement, the paper's downstream tasks, perplexity.

Layer: beside [`workbench.clt`][workbench.clt], above [`workbench.neurons`][workbench.neurons] and
[`workbench.lens`][workbench.lens].
"""
