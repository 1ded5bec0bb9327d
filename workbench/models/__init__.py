"""Where models come from: loading routes (the Gemma GGUF build, a local folder, the hub, the zoo,
tiny test models), native configs for the families TransformerLens configures only from hub names
([`native`][workbench.models.native]), a tiny model of every supported family
([`families`][workbench.models.families]), the hub check, the cache root, and where trained zoo models
are found.

Layer: just above [`workbench.errors`][workbench.errors]. Kept light: importing the package imports no torch;
[`loading`][workbench.models.loading] does.
"""
