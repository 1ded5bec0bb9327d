"""The presets that reproduce the papers' designs: families of zoo models trained alike but for one setting.

The setting is the English share of the mixture, or the depth.
"""

from __future__ import annotations

TOKENIZER_LANGUAGES = ("en", "fr", "de", "ar", "zh")
"""The presets' tokenizer languages: the third paper's five."""


def _rest(english: float) -> str:
    """A mixture with ``english`` for English and the rest split evenly over the other languages."""
    others = [lang for lang in TOKENIZER_LANGUAGES if lang != "en"]
    share = (1 - english) / len(others)
    return ",".join([f"en={english:g}", *(f"{lang}={share:g}" for lang in others)])


PRESETS: dict[str, dict[str, dict]] = {
    # English share 90/70/50/20/0 %, the rest split evenly over fr, de, ar, zh: same size, budget, seed.
    "mixtures": {
        f"mix-en{round(e * 100)}": {"mixture": _rest(e), "tokenizer_languages": TOKENIZER_LANGUAGES}
        for e in (0.9, 0.7, 0.5, 0.2, 0.0)
    },
    # One mixture at three depths: over-layerization (2404.13855) across a family.
    "depths": {
        f"depth-{n}": {"mixture": _rest(0.5), "tokenizer_languages": TOKENIZER_LANGUAGES, "layers": n}
        for n in (2, 4, 8)
    },
}
"""Each preset's models by name, with the settings that set them apart."""
