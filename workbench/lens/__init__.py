"""Reading the residual stream out: chunked unembedding (readout), the logit lens over every layer,
and the language of what each layer decodes to.

Layer: beside [`workbench.neurons`][workbench.neurons] and [`workbench.ffn`][workbench.ffn], above [`workbench.language`][workbench.language].
"""
