"""Reading the residual stream out: chunked unembedding (readout), the logit lens over every layer,
and the language of what each layer decodes to.

Layer: beside :mod:`workbench.neurons` and :mod:`workbench.ffn`, above :mod:`workbench.language`.
"""
