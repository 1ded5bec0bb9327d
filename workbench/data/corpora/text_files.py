"""Corpora from local files, or any texts in memory: ``.txt`` (one document per line) or ``.jsonl``.

A ``.jsonl`` record is ``{"text": ..., "language": ..., "id": ...}``; records that share an ``id``
across languages are aligned, as the Bible's verses are. A line that cannot be read raises
[`CorpusFormatError`][workbench.errors.CorpusFormatError] naming the file, the line and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.data.corpora.base import DEFAULT_HELDOUT_FRACTION, Corpus
from workbench.errors import CorpusFormatError, EmptyCorpusError


class TextCorpus(Corpus):
    """Documents held in memory: language -> id -> text. Built from local files or a hub dataset.

    Args:
        texts: Language -> document id -> text; languages without documents are dropped.
        name: The corpus's name.
        sources: Where each language's texts come from (default: the name).
        heldout_fraction: The share of documents held out.

    Raises:
        EmptyCorpusError: A document is empty, or no language has any.
    """

    def __init__(
        self,
        texts: dict[str, dict[str, str]],
        name: str = "text",
        sources: dict[str, str] | None = None,
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    ) -> None:
        for lang, docs in texts.items():
            empty = [i for i, t in docs.items() if not t.strip()]
            if empty:
                raise EmptyCorpusError(
                    f"{len(empty)} empty {lang} document(s) in {name!r}, e.g. id {empty[0]!r}; "
                    "remove them or give them text."
                )
        texts = {lang: docs for lang, docs in texts.items() if docs}
        if not texts:
            raise EmptyCorpusError(f"Corpus {name!r} has no documents.")
        self._texts = texts
        self.name = name
        self._sources = sources or {}
        self.heldout_fraction = heldout_fraction

    @property
    def languages(self) -> list[str]:
        """The languages with documents, sorted."""
        return sorted(self._texts)

    def texts(self, language: str) -> dict[str, str]:
        """The documents of ``language``: id -> text."""
        self.check_languages([language])
        return self._texts[language]

    def source_of(self, language: str) -> str:
        """Where ``language``'s texts come from (a file, a dataset configuration, or the name)."""
        return self._sources.get(language, self.name)

    def describe(self) -> dict[str, Any]:
        """The corpus for a manifest: its sources and sizes."""
        return {
            "name": self.name,
            "heldout_fraction": self.heldout_fraction,
            "sources": {lang: self.source_of(lang) for lang in self.languages},
            "sizes": self.sizes(),
        }

    @classmethod
    def from_files(
        cls,
        files_by_language: dict[str, str | Path],
        name: str = "files",
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    ) -> TextCorpus:
        """One file per language: ``.txt`` (a document per non-blank line) or ``.jsonl``.

        In ``.jsonl`` each record needs ``text``; an ``id`` shared across languages aligns
        documents (otherwise the id is the line number, which aligns line-parallel files).

        Raises:
            FileNotFoundError: A file is missing.
            CorpusFormatError: A line cannot be read; the message names the file and the line.
        """
        texts: dict[str, dict[str, str]] = {}
        for lang, path in files_by_language.items():
            path = Path(path)
            if not path.exists():
                raise FileNotFoundError(f"Corpus file for {lang!r} not found: {path}")
            texts[lang] = {doc_id: text for _, doc_id, text, _ in _read_file(path)}
        sources = {lang: str(p) for lang, p in files_by_language.items()}
        return cls(texts, name=name, sources=sources, heldout_fraction=heldout_fraction)

    @classmethod
    def from_jsonl(
        cls, path: str | Path, name: str | None = None, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
    ) -> TextCorpus:
        """One ``.jsonl`` file whose records carry ``language`` and ``text`` (and maybe ``id``).

        Args:
            path: The file.
            name: The corpus's name (default: the file's stem).
            heldout_fraction: The share of documents held out.

        Raises:
            FileNotFoundError: The file is missing.
            CorpusFormatError: A line cannot be read, or a record has no language code.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Corpus file not found: {path}")
        texts: dict[str, dict[str, str]] = {}
        for line_no, doc_id, text, lang in _read_file(path):
            if lang is None:
                raise CorpusFormatError(
                    f"{path}, line {line_no}: record has no 'language' field. {_JSONL_FORMAT} "
                    "Add the language to every record, or pass one file per language with "
                    "TextCorpus.from_files."
                )
            if not isinstance(lang, str) or not lang.strip():
                raise CorpusFormatError(
                    f"{path}, line {line_no}: 'language' must be a language code such as \"en\", "
                    f"got {lang!r}. {_JSONL_FORMAT}"
                )
            texts.setdefault(lang, {})[doc_id] = text
        return cls(texts, name=path.stem if name is None else name, sources=None, heldout_fraction=heldout_fraction)


_JSONL_FORMAT = (
    "Each line of a .jsonl corpus must be one JSON object with 'language' and 'text' "
    '(and optionally \'id\'), e.g. {"id": "1", "language": "en", "text": "Hello."}.'
)
"""What every format error adds: the shape of a ``.jsonl`` record."""


def _read_file(path: Path) -> Iterator[tuple[int, str, str, object]]:
    """Yield (line number, id, text, language or None) from a .txt or .jsonl file.

    A line that is not UTF-8, not a JSON object, or a record without a string ``text`` raises
    [`CorpusFormatError`][workbench.errors.CorpusFormatError] naming the file and the line.
    """
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusFormatError(
                    f"{path}, line {line_no}: not UTF-8 text ({exc.reason}); save the file as UTF-8."
                ) from exc
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                record = _parse_record(path, line_no, line)
                yield line_no, str(record.get("id", line_no)), record["text"], record.get("language")
            else:
                yield line_no, str(line_no), line.strip(), None


def _parse_record(path: Path, line_no: int, line: str) -> dict[str, Any]:
    """One .jsonl line as a record with a string ``text``.

    Raises:
        CorpusFormatError: The line is not a JSON object, or has no string ``text``.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusFormatError(
            f"{path}, line {line_no}: not valid JSON ({exc.msg}, column {exc.colno}). "
            f"{_JSONL_FORMAT} Fix or remove that line."
        ) from exc
    if not isinstance(record, dict):
        raise CorpusFormatError(
            f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}. {_JSONL_FORMAT}"
        )
    if "text" not in record:
        raise CorpusFormatError(f"{path}, line {line_no}: record has no 'text' field. {_JSONL_FORMAT}")
    if not isinstance(record["text"], str):
        raise CorpusFormatError(
            f"{path}, line {line_no}: 'text' must be a string, got {type(record['text']).__name__}. {_JSONL_FORMAT}"
        )
    return record
