"""Where models come from: loading routes (the Gemma GGUF build, a local folder, the hub, the zoo,
tiny test models), native configs for the families TransformerLens configures only from hub names
(:mod:`~workbench.models.native`), a tiny model of every supported family
(:mod:`~workbench.models.families`), the hub check, the cache root, and where trained zoo models
are found.

Layer: just above :mod:`workbench.errors`. Kept light: importing the package imports no torch;
:mod:`~workbench.models.loading` does.
"""
