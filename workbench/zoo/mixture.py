"""A language mixture: the share of training tokens each language gets.

Written as ``en=0.5,fr=0.125,de=0.125,ar=0.125,zh=0.125``; shares are normalised to sum to 1, so
``en=2,fr=1,de=1`` means the same as ``en=0.5,fr=0.25,de=0.25``. A language may have share 0: it
gets no training tokens but is still part of the family's tokenizer and of the held-out
evaluation (the model trained with no English is ``en=0,...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.data.languages import language_name
from workbench.errors import UnknownLanguageError, WorkbenchError


class MixtureError(WorkbenchError, ValueError):
    """A mixture that cannot be trained on: malformed, negative, or summing to nothing."""


@dataclass(frozen=True)
class Mixture:
    """Languages and their normalised shares of the training tokens, in the order written."""

    shares: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str, available: list[str] | tuple[str, ...]) -> Mixture:
        """``"en=0.5,fr=0.5"`` -> a checked, normalised mixture over languages in ``available``."""
        raw: dict[str, float] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            language, sep, value = item.partition("=")
            language = language.strip().lower()
            if not sep or not language:
                raise MixtureError(f"Mixture item {item!r} is not LANGUAGE=SHARE; write e.g. en=0.5,fr=0.5.")
            if language in raw:
                raise MixtureError(f"Language {language!r} appears twice in the mixture {text!r}.")
            try:
                share = float(value)
            except ValueError:
                raise MixtureError(f"Share {value.strip()!r} of {language} is not a number.") from None
            if not math.isfinite(share) or share < 0:
                raise MixtureError(f"Share of {language} must be a finite number >= 0, got {value.strip()}.")
            raw[language] = share
        if not raw:
            raise MixtureError("Empty mixture; write e.g. --mixture en=0.5,fr=0.25,de=0.25.")
        unknown = [language for language in raw if language not in available]
        if unknown:
            listing = ", ".join(f"{code} ({language_name(code)})" for code in available)
            raise UnknownLanguageError(f"No training text for {', '.join(unknown)}. Languages: {listing}.")
        total = sum(raw.values())
        if total <= 0:
            raise MixtureError(f"The shares of {text!r} sum to {total:g}; at least one must be positive.")
        return cls(tuple((language, share / total) for language, share in raw.items()))

    @property
    def languages(self) -> list[str]:
        """Every language named, trained on or not."""
        return [language for language, _ in self.shares]

    @property
    def trained(self) -> list[str]:
        """The languages with a positive share."""
        return [language for language, share in self.shares if share > 0]

    def share(self, language: str) -> float:
        """The language's share of the training tokens (0 for a language not named)."""
        return dict(self.shares).get(language, 0.0)

    def __str__(self) -> str:
        return ",".join(f"{language}={share:.6g}" for language, share in self.shares)
