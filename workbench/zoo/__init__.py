"""The model zoo: small multilingual causal LMs trained here on controlled language mixtures.

They train on the Bible corpus (and at several depths), so the workbench can ask what changes when
a model sees less English, on models no hub offers.

* [`mixture`][workbench.zoo.mixture]: the language mixture (``en=0.5,fr=0.125,...``), checked and
  normalised;
* [`data`][workbench.zoo.data]: every translation's training verses (held-out verse ids never),
  token streams, and the seeded plan of which language each sequence reads;
* [`tokenizer`][workbench.zoo.tokenizer]: the family's byte-level BPE, shared by every model naming the
  same languages;
* [`options`][workbench.zoo.options]: a model's settings, defined once (the CLI comes from them);
* [`train`][workbench.zoo.train]: training with checkpoints and exact resume, saved as a Hugging
  Face folder plus ``zoo.json``;
* [`evaluate`][workbench.zoo.evaluate]: held-out loss per language;
* [`presets`][workbench.zoo.presets]: the presets that reproduce the papers' designs (where trained
  models are found is [`workbench.models.catalog`][workbench.models.catalog]).

``workbench zoo train NAME`` / ``--preset mixtures|depths``, ``workbench zoo list``;
``--model zoo:NAME`` in every analysis.
"""
