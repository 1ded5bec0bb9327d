"""Offline language identification of single tokens (decoded vocabulary pieces).

A token is labelled with a language code, ``"ambiguous"`` (a word of several languages whose
frequencies are too close to call: "de" is Spanish, French and Portuguese), ``"unknown"`` (a word
start whose letters make no word of any known language) or ``"none"`` (whitespace, punctuation,
digits, symbols, pieces shorter than ``min_letters``, and Latin pieces that continue a word and
are not frequent words themselves: sub-word fragments).

Two kinds of evidence, in order:

1. **Script.** Hangul is Korean, kana Japanese, Devanagari Hindi, Bengali script Bengali, Thai
   Thai, Hebrew Hebrew, Greek Greek. Scripts shared by several of the classifier's languages are
   split by letters only one of them uses (Ukrainian і/ї/є/ґ, Russian ы/э/ъ/ё; Persian پ/چ/ژ/گ/ی/ک)
   and then by word frequency (Han characters: Chinese vs Japanese).
2. **Word frequency** for Latin script (and the ties above): the Zipf frequency of the lower-cased
   word in each language's list from the ``wordfreq`` package (a registry package built from
   Wikipedia, subtitles, news, books, web text), and, for languages wordfreq lacks (Swahili),
   a list counted on the *analysis* split of the Bible corpus. The most frequent language wins
   when it leads the runner-up by ``margin`` Zipf units (a factor of 10 at 1.0); otherwise the
   token is ambiguous and keeps its candidate languages.

The script evidence is [`workbench.language.scripts`][workbench.language.scripts], the word lists
[`workbench.language.wordlists`][workbench.language.wordlists]; labels of a whole vocabulary are
computed once per tokenizer and cached
([`vocab_languages`][workbench.language.vocabulary.vocab_languages]).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from workbench.language.scripts import PERSIAN_LETTERS, RUSSIAN_LETTERS, SCRIPT_LANGUAGE, UKRAINIAN_LETTERS, script_of
from workbench.language.wordlists import WORDFREQ_CODES, corpus_frequencies, wordfreq_zipf

if TYPE_CHECKING:
    from workbench.data.corpus import Corpus

NONE, UNKNOWN, AMBIGUOUS = "none", "unknown", "ambiguous"
"""The special labels: no language (punctuation, fragments...), an unknown word, a tie between languages."""
SPECIAL_LABELS = (NONE, UNKNOWN, AMBIGUOUS)
"""The special labels, in the order a vocabulary's label names start with."""
FORMAT = 1
"""The version of the labels' cache format (part of every cache key)."""
_MARKERS = "▁Ġ "  # word-start markers of SentencePiece and byte-level BPE vocabularies


@dataclass(frozen=True)
class TokenLanguage:
    """The label of one token and, when ambiguous, the languages it could be."""

    label: str
    candidates: tuple[str, ...] = ()


@dataclass
class TokenClassifier:
    """Labels tokens with one of ``languages`` or a special label (see module docstring).

    Attributes:
        languages: The languages a token may be.
        margin: How many Zipf units the most frequent language must lead the runner-up by.
        min_zipf: The least Zipf frequency of a word that starts a word.
        min_zipf_fragment: The least Zipf frequency of a piece that continues a word.
        min_letters: Pieces with fewer letters (in a script of several languages) are ``none``.
        extra_frequencies: Word lists (word -> Zipf frequency) for languages wordfreq lacks.
    """

    languages: Sequence[str]
    margin: float = 1.0
    min_zipf: float = 3.0
    min_zipf_fragment: float = 4.5
    min_letters: int = 2
    extra_frequencies: dict[str, dict[str, float]] = field(default_factory=dict)

    @cached_property
    def _zipf(self) -> dict[str, dict[str, float]]:
        """Per language: word -> Zipf frequency (log10 of frequency per billion words)."""
        tables = {}
        for lang in self.languages:
            if lang in self.extra_frequencies:
                tables[lang] = self.extra_frequencies[lang]
            elif (table := wordfreq_zipf(WORDFREQ_CODES.get(lang, lang))) is not None:
                tables[lang] = table
        return tables

    def describe(self) -> dict[str, Any]:
        """Settings and sources, for manifests and cache keys."""
        import wordfreq

        sources = {
            lang: (
                "bible analysis split"
                if lang in self.extra_frequencies
                else f"wordfreq {getattr(wordfreq, '__version__', '')}".strip()
                if lang in self._zipf
                else "script only"
            )
            for lang in self.languages
        }
        return {
            "format": FORMAT,
            "languages": list(self.languages),
            "margin": self.margin,
            "min_zipf": self.min_zipf,
            "min_zipf_fragment": self.min_zipf_fragment,
            "min_letters": self.min_letters,
            "sources": sources,
        }

    def classify(self, token: str) -> TokenLanguage:
        """The language label of one decoded token string."""
        letters = [c for c in token.strip(_MARKERS) if c.isalpha()]
        if not letters:
            return TokenLanguage(NONE)
        scripts = Counter(script_of(c) for c in letters)
        script = scripts.most_common(1)[0][0]
        word = "".join(c for c in token.strip(_MARKERS).lower() if c.isalpha() or c in "'’-")
        if script in SCRIPT_LANGUAGE:
            lang = SCRIPT_LANGUAGE[script]
            return TokenLanguage(lang) if lang in self.languages else TokenLanguage(UNKNOWN)
        if script == "CYRILLIC":
            return self._split(word, self._cyrillic_candidates(letters))
        if script == "ARABIC":
            return self._split(word, self._arabic_candidates(letters))
        if script == "HAN":
            return self._split(word, [lang for lang in ("zh", "ja") if lang in self.languages], default="zh")
        if len(letters) < self.min_letters:
            return TokenLanguage(NONE)
        if script == "LATIN":
            starts_word = token[:1] in _MARKERS
            result = self._by_frequency(
                word,
                [lang for lang in self.languages if lang in self._zipf],
                self.min_zipf if starts_word else self.min_zipf_fragment,
            )
            # A piece that continues a word ("ing", "ung") is a sub-word fragment unless it is
            # also a frequent word in its own right.
            return result if starts_word or result.label != UNKNOWN else TokenLanguage(NONE)
        return TokenLanguage(UNKNOWN)

    def _cyrillic_candidates(self, letters: Iterable[str]) -> list[str]:
        letters = set(letters)
        if letters & UKRAINIAN_LETTERS:
            return [lang for lang in ("uk",) if lang in self.languages]
        if letters & RUSSIAN_LETTERS:
            return [lang for lang in ("ru",) if lang in self.languages]
        return [lang for lang in ("ru", "uk") if lang in self.languages]

    def _arabic_candidates(self, letters: Iterable[str]) -> list[str]:
        if set(letters) & PERSIAN_LETTERS:
            return [lang for lang in ("fa",) if lang in self.languages]
        return [lang for lang in ("ar", "fa") if lang in self.languages]

    def _split(self, word: str, candidates: list[str], default: str | None = None) -> TokenLanguage:
        """A script shared by ``candidates``: one candidate outright, else by frequency."""
        if not candidates:
            return TokenLanguage(UNKNOWN)
        if len(candidates) == 1:
            return TokenLanguage(candidates[0])
        result = self._by_frequency(word, candidates)
        if result.label == UNKNOWN:
            return TokenLanguage(default or candidates[0])
        return result

    def _by_frequency(self, word: str, candidates: list[str], min_zipf: float | None = None) -> TokenLanguage:
        floor = self.min_zipf if min_zipf is None else min_zipf
        scores = {
            lang: self._zipf[lang][word]
            for lang in candidates
            if lang in self._zipf and self._zipf[lang].get(word, -1.0) >= floor
        }
        if not scores:
            return TokenLanguage(UNKNOWN)
        ranked = sorted(scores, key=lambda lang: scores[lang], reverse=True)
        if len(ranked) == 1 or scores[ranked[0]] - scores[ranked[1]] >= self.margin:
            return TokenLanguage(ranked[0])
        close = tuple(sorted(lang for lang in ranked if scores[ranked[0]] - scores[lang] < self.margin))
        return TokenLanguage(AMBIGUOUS, close)


def default_classifier(corpus: Corpus | None = None, languages: Sequence[str] | None = None) -> TokenClassifier:
    """A classifier over ``languages``, with corpus word lists for the languages wordfreq lacks.

    Args:
        corpus: The corpus whose analysis split (only) gives those word lists; by default the
            Bible corpus.
        languages: The languages; by default the corpus's.

    Returns:
        The classifier.
    """
    import wordfreq

    from workbench.data.corpus import BibleCorpus

    corpus = corpus or BibleCorpus()
    languages = list(languages or corpus.languages)
    available = wordfreq.available_languages("best")
    extra = {}
    for lang in languages:
        if WORDFREQ_CODES.get(lang, lang) not in available and lang in corpus.languages:
            ids = corpus.ids([lang], "analysis")
            texts = corpus.texts(lang)
            extra[lang] = corpus_frequencies(texts[i] for i in ids)
    return TokenClassifier(languages, extra_frequencies=extra)
