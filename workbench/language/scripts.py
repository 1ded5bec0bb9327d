"""Script detection: which script a letter is written in, and which scripts name one language.

The first evidence of a token's language (see [`workbench.language.classifier`][workbench.language.classifier]):
Hangul is Korean, kana Japanese, Devanagari Hindi, Bengali script Bengali, Thai Thai, Hebrew
Hebrew, Greek Greek. Scripts shared by several of the classifier's languages are split by letters
only one of them uses (Ukrainian і/ї/є/ґ, Russian ы/э/ъ/ё; Persian پ/چ/ژ/گ/ی/ک), then by word
frequency. Everything here comes from the Unicode character names; nothing is downloaded.
"""

from __future__ import annotations

import unicodedata

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


def script_of(char: str) -> str:
    """The script of one letter, from its Unicode name (``"LATIN"``, ``"CYRILLIC"``, ``"HAN"``...)."""
    name = unicodedata.name(char, "")
    if name.startswith("CJK UNIFIED IDEOGRAPH") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
        return "HAN"
    return name.split(" ", 1)[0] if name else "UNKNOWN"
