"""Neurons: neuron sets, their selection, parallel importance, PLND, LAPE, and switching sets off.

Neuron sets over the five structures (FFN, Q, K, V, O) and their selection rules; parallel
importance (with the Q/K pattern-change kernel in C); PLND with its literal reference; LAPE; and
the hooks that switch a set off.

Layer: beside [`workbench.lens`][workbench.lens] and [`workbench.ffn`][workbench.ffn], above
[`workbench.language`][workbench.language].
"""
