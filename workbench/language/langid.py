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

Labels of a whole vocabulary are computed once per tokenizer and cached
([`vocab_languages`][workbench.language.langid.vocab_languages]).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from jaxtyping import Bool, Int

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from workbench.data.corpus import Corpus

NONE, UNKNOWN, AMBIGUOUS = "none", "unknown", "ambiguous"
"""The special labels: no language (punctuation, fragments...), an unknown word, a tie between languages."""
SPECIAL_LABELS = (NONE, UNKNOWN, AMBIGUOUS)
"""The special labels, in the order a vocabulary's label names start with."""
WORDFREQ_CODES = {"tl": "fil"}
"""Wordfreq's language code where it differs from ours."""
FORMAT = 1
"""The version of the labels' cache format (part of every cache key)."""

SCRIPT_LANGUAGE = {
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "DEVANAGARI": "hi",
    "BENGALI": "bn",
    "THAI": "th",
    "HEBREW": "he",
    "GREEK": "el",
}
"""Scripts that name one language outright, by the first word of the Unicode character name."""
UKRAINIAN_LETTERS = set("іїєґІЇЄҐ")
"""Cyrillic letters only Ukrainian uses (of Ukrainian and Russian)."""
RUSSIAN_LETTERS = set("ыэъёЫЭЪЁ")
"""Cyrillic letters only Russian uses (of Russian and Ukrainian)."""
PERSIAN_LETTERS = set("پچژگیک")
"""Arabic-script letters Persian uses and Arabic does not."""
_MARKERS = "▁Ġ "  # word-start markers of SentencePiece and byte-level BPE vocabularies


@cache
def wordfreq_zipf(code: str) -> dict[str, float] | None:
    """Wordfreq's "best" list for a language as word -> Zipf frequency (read once per process)."""
    import wordfreq

    if code not in wordfreq.available_languages("best"):
        return None
    freqs = wordfreq.get_frequency_dict(code, wordlist="best")
    return {w: math.log10(f) + 9 for w, f in freqs.items() if f > 0}


def script_of(char: str) -> str:
    """The script of one letter, from its Unicode name (``"LATIN"``, ``"CYRILLIC"``, ``"HAN"``...)."""
    name = unicodedata.name(char, "")
    if name.startswith("CJK UNIFIED IDEOGRAPH") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
        return "HAN"
    return name.split(" ", 1)[0] if name else "UNKNOWN"


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


# --------------------------------------------------------------------------- corpus word lists

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def corpus_frequencies(texts: Iterable[str], min_count: int = 3) -> dict[str, float]:
    """Zipf frequencies of the words of ``texts`` (lower-cased), keeping words seen ``min_count`` times."""
    counts = Counter(w.lower() for text in texts for w in _WORD.findall(text))
    total = sum(counts.values()) or 1
    return {w: math.log10(c / total) + 9 for w, c in counts.items() if c >= min_count}


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


# --------------------------------------------------------------------------- vocabularies


@dataclass
class VocabLanguages:
    """The label of every token id of a vocabulary.

    Attributes:
        names: The special labels, then the languages.
        labels: Each token's label, as an index into ``names`` (int16).
        candidates: Each token's languages, as a bit set over ``languages`` (int64): one bit for a
            token of one language, several for an ambiguous one, none for the special labels.
    """

    names: list[str]
    labels: Int[np.ndarray, " d_vocab"]
    candidates: Int[np.ndarray, " d_vocab"]

    @property
    def languages(self) -> list[str]:
        """The languages, in bit order."""
        return self.names[len(SPECIAL_LABELS) :]

    def is_label(self, label: str) -> Bool[np.ndarray, " d_vocab"]:
        """Tokens labelled exactly ``label``."""
        if label not in self.names:
            return np.zeros(len(self.labels), dtype=bool)
        return self.labels == self.names.index(label)

    def may_be(self, language: str) -> Bool[np.ndarray, " d_vocab"]:
        """Tokens of ``language``, or ambiguous between it and others."""
        if language not in self.languages:
            return np.zeros(len(self.labels), dtype=bool)
        return (self.candidates >> self.languages.index(language)) & 1 == 1

    def label_of(self, token_id: int) -> str:
        """The label of one token."""
        return self.names[int(self.labels[token_id])]

    def counts(self) -> dict[str, int]:
        """How many tokens carry each label."""
        values = np.bincount(self.labels, minlength=len(self.names))
        return {name: int(n) for name, n in zip(self.names, values)}


def _present(tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    """The tokenizer, refused with a message where the model has none."""
    if tokenizer is None:
        raise WorkbenchError("Token languages need the model's tokenizer; this model has none.")
    return tokenizer


def decoded_vocab(tokenizer: PreTrainedTokenizerBase | None, d_vocab: int) -> list[str]:
    """Each token id decoded on its own, keeping a word-start space.

    Specials and raw-byte pieces decode to '' (no language), as do ids past the tokenizer's
    vocabulary.

    Args:
        tokenizer: The model's tokenizer (``model.tokenizer``).
        d_vocab: The model's vocabulary size.

    Returns:
        Each token id's piece.

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    tokenizer = _present(tokenizer)
    size = min(d_vocab, len(tokenizer))
    pieces = cast(list[str | None], tokenizer.convert_ids_to_tokens(list(range(size))))  # a list in, a list out
    special = set(getattr(tokenizer, "all_special_tokens", []))
    out = []
    for piece in pieces:
        if piece is None or piece in special or (piece.startswith("<0x") and piece.endswith(">")):
            out.append("")
        else:
            out.append(tokenizer.convert_tokens_to_string([piece]))
    return out + [""] * (d_vocab - size)


def label_vocab(pieces: Sequence[str], classifier: TokenClassifier) -> VocabLanguages:
    """Classify every decoded piece."""
    names = list(SPECIAL_LABELS) + list(classifier.languages)
    index = {name: i for i, name in enumerate(names)}
    bit = {lang: 1 << i for i, lang in enumerate(classifier.languages)}
    labels = np.empty(len(pieces), dtype=np.int16)
    candidates = np.zeros(len(pieces), dtype=np.int64)
    for token_id, piece in enumerate(pieces):
        result = classifier.classify(piece)
        labels[token_id] = index[result.label]
        for lang in result.candidates or ((result.label,) if result.label in bit else ()):
            candidates[token_id] |= bit[lang]
    return VocabLanguages(names, labels, candidates)


def vocab_languages(
    tokenizer: PreTrainedTokenizerBase | None, d_vocab: int, classifier: TokenClassifier, cache_dir: Path | None = None
) -> VocabLanguages:
    """Labels for every token id, cached on disk per (vocabulary, classifier settings).

    Args:
        tokenizer: The model's tokenizer (``model.tokenizer``).
        d_vocab: The model's vocabulary size (ids past the tokenizer's are labelled ``none``).
        classifier: The classifier.
        cache_dir: Where the cache folder ``langid`` goes; by default the workbench cache.

    Returns:
        The vocabulary's labels.

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    from workbench.models.catalog import cache_root
    from workbench.runs.results import load_arrays, load_json, save_arrays, save_json

    pieces = decoded_vocab(tokenizer, d_vocab)
    key = hashlib.sha256(("\x00".join(pieces) + repr(classifier.describe())).encode("utf-8")).hexdigest()[:16]
    folder = (cache_dir or cache_root()) / "langid"
    arrays_path, meta_path = folder / f"vocab-{key}.npz", folder / f"vocab-{key}.json"
    if arrays_path.exists() and meta_path.exists():
        arrays = load_arrays(arrays_path)
        return VocabLanguages(load_json(meta_path)["names"], arrays["labels"], arrays["candidates"])
    vocab = label_vocab(pieces, classifier)
    save_arrays(arrays_path, {"labels": vocab.labels, "candidates": vocab.candidates})
    save_json(meta_path, {"names": vocab.names, "classifier": classifier.describe()})
    return vocab


# --------------------------------------------------------------------------- accuracy


def accuracy_table(
    vocab: VocabLanguages, tokens_by_language: Mapping[str, Sequence[Sequence[int]]]
) -> list[dict[str, Any]]:
    """Per-language precision and recall of the token labels on texts of known language.

    Tokens labelled ``none`` (punctuation, digits, fragments) are left out.

    Args:
        vocab: The vocabulary's labels.
        tokens_by_language: Per language, the token ids of its texts (parallel texts give every
            language the same content).

    Returns:
        One row per language. ``recall``: the share of a language's content tokens labelled
        exactly that language; ``recall_or_ambiguous``: also counting ambiguous tokens that list
        it; ``precision``: of all tokens labelled L across every language's texts, the share that
        came from L's texts. ``ambiguous`` and ``unknown`` give the shares of content tokens so
        labelled.
    """
    none, ambiguous, unknown = (vocab.names.index(x) for x in (NONE, AMBIGUOUS, UNKNOWN))
    ids = {
        lang: np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) for lang, docs in tokens_by_language.items()
    }
    labelled_as: Counter = Counter()
    for lang_ids in ids.values():
        labelled_as.update(vocab.labels[lang_ids].tolist())
    rows = []
    for lang, lang_ids in ids.items():
        content = lang_ids[vocab.labels[lang_ids] != none]
        labels = vocab.labels[content]
        code = vocab.names.index(lang) if lang in vocab.languages else -1
        hits = int((labels == code).sum())
        n = max(len(content), 1)
        rows.append(
            {
                "language": lang,
                "tokens": int(len(lang_ids)),
                "content_tokens": int(len(content)),
                "precision": round(hits / max(labelled_as[code], 1), 4),
                "recall": round(hits / n, 4),
                "recall_or_ambiguous": round(int(vocab.may_be(lang)[content].sum()) / n, 4),
                "ambiguous": round(int((labels == ambiguous).sum()) / n, 4),
                "unknown": round(int((labels == unknown).sum()) / n, 4),
            }
        )
    return rows


def heldout_accuracy(
    tokenizer: PreTrainedTokenizerBase | None,
    vocab: VocabLanguages,
    corpus: Corpus,
    languages: Sequence[str],
    n: int = 300,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """[`accuracy_table`][workbench.language.langid.accuracy_table] on held-out documents of ``corpus``.

    ``n`` aligned documents per language, drawn with ``seed`` from the held-out split (the word
    lists only ever see the analysis split), tokenised by ``tokenizer`` (``model.tokenizer``).

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    tokenizer = _present(tokenizer)
    docs = corpus.parallel_sample(list(languages), n, "heldout", seed)
    tokens = {
        lang: [tokenizer(text, add_special_tokens=False)["input_ids"] for text in docs[lang]["text"]]
        for lang in languages
    }
    return accuracy_table(vocab, tokens)
