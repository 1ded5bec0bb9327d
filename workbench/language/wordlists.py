"""Word-frequency lists: each language's words with their Zipf frequencies.

The second evidence of a token's language (see [`workbench.language.classifier`][workbench.language.classifier]):
the Zipf frequency (log10 of the frequency per billion words) of a word in each language. The lists
come from the ``wordfreq`` package (a registry package built from Wikipedia, subtitles, news, books,
web text) and, for languages wordfreq lacks (Swahili), from word counts on a corpus's *analysis*
split ([`corpus_frequencies`][workbench.language.wordlists.corpus_frequencies]), so held-out text
never shapes a list.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache

WORDFREQ_CODES = {"tl": "fil"}
"""Wordfreq's language code where it differs from ours."""


@cache
def wordfreq_zipf(code: str) -> dict[str, float] | None:
    """Wordfreq's "best" list for a language as word -> Zipf frequency (read once per process)."""
    import wordfreq

    if code not in wordfreq.available_languages("best"):
        return None
    freqs = wordfreq.get_frequency_dict(code, wordlist="best")
    return {w: math.log10(f) + 9 for w, f in freqs.items() if f > 0}


_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def corpus_frequencies(texts: Iterable[str], min_count: int = 3) -> dict[str, float]:
    """Zipf frequencies of the words of ``texts`` (lower-cased), keeping words seen ``min_count`` times."""
    counts = Counter(w.lower() for text in texts for w in _WORD.findall(text))
    total = sum(counts.values()) or 1
    return {w: math.log10(c / total) + 9 for w, c in counts.items() if c >= min_count}
