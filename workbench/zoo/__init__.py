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
* [`train`][workbench.zoo.train]: the training run, from scratch or from a base's weights;
* [`checkpoint`][workbench.zoo.checkpoint]: a run's work folder and checkpoints, for exact resume;
* [`manifest`][workbench.zoo.manifest]: the finished Hugging Face folder's ``zoo.json``, a
  fine-tune's base and a trained twin read from it;
* [`evaluate`][workbench.zoo.evaluate]: held-out loss per language;
* [`presets`][workbench.zoo.presets]: the presets that reproduce the papers' designs (where trained
  models are found is [`workbench.models.catalog`][workbench.models.catalog]).

``workbench zoo train NAME`` / ``--preset mixtures|depths``, ``workbench zoo list``;
``--model zoo:NAME`` in every analysis.
"""
