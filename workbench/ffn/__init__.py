"""FFN detectors and combinators (arXiv 2404.13855): their usage statistics, and layer similarity.

Per-layer usage statistics of the two FFN sublayers, and representational similarity between
layers and models.

Layer: beside [`workbench.neurons`][workbench.neurons] and [`workbench.lens`][workbench.lens], above
[`workbench.language`][workbench.language].
"""
