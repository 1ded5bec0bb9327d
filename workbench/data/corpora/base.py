"""The interface every corpus shares: documents by language and id, a fixed split, aligned samples.

A document's split (analysis or held-out) is a hash of its id
([`split_of`][workbench.data.corpora.base.split_of]), so it never depends on the order of the
documents or on which languages are asked for. Samples come back as ``datasets.Dataset`` objects
with the columns ``id``, ``language``, ``text`` and ``source``, so they plug into the rest of the
ecosystem.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal

from workbench.data.languages import language_name
from workbench.errors import EmptyCorpusError, UnknownLanguageError

if TYPE_CHECKING:  # imported where used: `datasets` takes a second to import, the checks none
    import datasets

Split = Literal["analysis", "heldout", "all"]
"""A part of a corpus: the analysis documents, the held-out ones, or all."""
SPLITS: tuple[str, ...] = ("analysis", "heldout", "all")
"""Every [`Split`][workbench.data.corpora.base.Split], in order."""
DEFAULT_HELDOUT_FRACTION = 0.1
"""The share of documents held out, by hash of their id."""


def split_of(doc_id: str, heldout_fraction: float) -> str:
    """The split a document id belongs to: a hash of the id, so it never depends on order."""
    h = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "heldout" if h < heldout_fraction else "analysis"


class Corpus(ABC):
    """Documents keyed by language and id, with a fixed split and seeded, aligned sampling.

    Attributes:
        name: The corpus's name, in messages and manifests.
        heldout_fraction: The share of documents in the held-out split.
    """

    name: str
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION

    @property
    @abstractmethod
    def languages(self) -> list[str]:
        """Language codes this corpus has, in a stable order."""

    @abstractmethod
    def texts(self, language: str) -> dict[str, str]:
        """All usable documents of one language: id -> text (no empty texts)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a results manifest should record about this corpus."""

    def check_languages(self, languages: list[str]) -> None:
        """Refuse languages this corpus does not have.

        Raises:
            UnknownLanguageError: A language is missing; the message lists the available ones.
        """
        missing = [lang for lang in languages if lang not in self.languages]
        if missing:
            available = ", ".join(f"{c} ({language_name(c)})" for c in self.languages)
            raise UnknownLanguageError(
                f"Language(s) {', '.join(missing)} not in corpus {self.name!r}. Available: {available}."
            )

    def ids(self, languages: list[str], split: Split = "all") -> list[str]:
        """Ids present (non-empty) in every one of ``languages`` and in ``split``, sorted.

        Raises:
            ValueError: ``split`` is not one of [`SPLITS`][workbench.data.corpora.base.SPLITS].
            UnknownLanguageError: A language is not in the corpus.
        """
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
        self.check_languages(languages)
        common: set[str] | None = None
        for lang in languages:
            keys = set(self.texts(lang))
            common = keys if common is None else common & keys
        ids = sorted(common or ())
        if split != "all":
            ids = [i for i in ids if split_of(i, self.heldout_fraction) == split]
        return ids

    def sample_ids(self, languages: list[str], n: int | None, split: Split = "heldout", seed: int = 0) -> list[str]:
        """``n`` ids aligned across ``languages`` (all when ``n`` is None), chosen with ``seed``.

        The same (languages, n, split, seed) always gives the same ids, in a stable order.

        Raises:
            EmptyCorpusError: No document of ``split`` is shared by ``languages``.
            ValueError: ``n`` is not positive.
        """
        ids = self.ids(languages, split)
        if not ids:
            raise EmptyCorpusError(f"Corpus {self.name!r} has no {split} documents shared by {', '.join(languages)}.")
        if n is None or n >= len(ids):
            return ids
        if n <= 0:
            raise ValueError(f"Sample size must be positive, got {n}.")
        return sorted(random.Random(seed).sample(ids, n), key=ids.index)

    def documents(
        self, language: str, split: Split = "heldout", n: int | None = None, seed: int = 0
    ) -> datasets.Dataset:
        """A sample of one language's documents as a ``datasets.Dataset``."""
        return self.parallel([language], self.sample_ids([language], n, split, seed))[language]

    def parallel(self, languages: list[str], ids: list[str]) -> dict[str, datasets.Dataset]:
        """The same documents (by id) in each language: language -> Dataset in ``ids`` order.

        Raises:
            EmptyCorpusError: An id has no text in one of ``languages``.
        """
        from datasets import Dataset

        self.check_languages(languages)
        out = {}
        for lang in languages:
            texts = self.texts(lang)
            missing = [i for i in ids if i not in texts]
            if missing:
                raise EmptyCorpusError(
                    f"{len(missing)} id(s) have no {lang} text in {self.name!r}, e.g. {missing[:3]}."
                )
            out[lang] = Dataset.from_dict(
                {
                    "id": list(ids),
                    "language": [lang] * len(ids),
                    "text": [texts[i] for i in ids],
                    "source": [self.source_of(lang)] * len(ids),
                }
            )
        return out

    def parallel_sample(
        self, languages: list[str], n: int | None, split: Split = "heldout", seed: int = 0
    ) -> dict[str, datasets.Dataset]:
        """``n`` aligned documents in every language: the workhorse of cross-language comparisons."""
        return self.parallel(languages, self.sample_ids(languages, n, split, seed))

    def source_of(self, language: str) -> str:
        """Where a language's texts come from (a translation, a file)."""
        return self.name

    def sizes(self) -> dict[str, int]:
        """Number of usable documents per language."""
        return {lang: len(self.texts(lang)) for lang in self.languages}
