"""Language codes used across the workbench (ISO 639-1) and their English names."""

from __future__ import annotations

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic",
    "bn": "Bengali",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fr": "French",
    "hi": "Hindi",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sw": "Swahili",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


def language_name(code: str) -> str:
    """English name of a language code, or the code itself when the name is not known."""
    return LANGUAGE_NAMES.get(code, code)


def parse_languages(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Turn "en,de, fr" or ["en", "de"] into a clean, de-duplicated list of codes, order kept."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        code = item.strip().lower()
        if code and code not in out:
            out.append(code)
    if not out:
        raise ValueError("No language given: pass codes such as 'en,de,fr'.")
    return out
