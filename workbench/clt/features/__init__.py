"""A transcoder's features, by language: which carry a language's identity, which are shared.

[`stats`][workbench.clt.features.stats] counts every feature's use per language and derives the
language-specific, multilingual and identity features; [`cards`][workbench.clt.features.cards]
describes the chosen ones (place, use per language, top contexts); [`layers`][workbench.clt.features.layers]
says where they sit, layer by layer, and whether PLND's neurons agree; [`diff`][workbench.clt.features.diff]
diffs a base model and a fine-tuned one through the base model's features.
"""
