"""Where models come from: what a spec names, the loading routes, and where models are kept.

[`loading`][workbench.models.loading] turns a spec into a hooked model
([`Model`][workbench.models.model.Model]), one module per route: the embedded Gemma GGUF build
([`gemma`][workbench.models.gemma]), a local folder ([`folder`][workbench.models.folder]), a hub
name ([`hub_name`][workbench.models.hub_name]), the zoo ([`zoo`][workbench.models.zoo]) and the
tiny test models ([`tiny`][workbench.models.tiny]); the conversion they share is
[`convert`][workbench.models.convert], with native configs for the families TransformerLens
configures only from hub names ([`native`][workbench.models.native]). Beside them: a tiny model of
every supported family ([`families`][workbench.models.families]), a model's layers split over
devices ([`devices`][workbench.models.devices]), the hub check ([`hub`][workbench.models.hub]), the
cache root and where trained zoo models are found ([`catalog`][workbench.models.catalog]).

Layer: just above [`workbench.errors`][workbench.errors]. Kept light: importing the package imports
no torch; [`loading`][workbench.models.loading] does.
"""
