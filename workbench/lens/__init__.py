"""Reading the residual stream out: chunked readout, the logit lens, and each layer's language.

Chunked unembedding (readout), the logit lens over every layer, the language of what each layer
decodes to, and a linear probe of the language at every residual point.

Layer: beside [`workbench.neurons`][workbench.neurons] and [`workbench.ffn`][workbench.ffn], above
[`workbench.language`][workbench.language].
"""
