"""FFN detectors and combinators (arXiv 2404.13855): per-layer usage statistics of the two FFN
sublayers, and representational similarity between layers and models.

Layer: beside :mod:`workbench.neurons` and :mod:`workbench.lens`, above :mod:`workbench.language`.
"""
