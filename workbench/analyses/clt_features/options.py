"""Settings of the transcoder feature analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import OptionError, option
from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ("clt-train",)


@dataclass(frozen=True)
class Options(Base):
    """The held-out verses features are counted on, what makes a feature language-specific or multilingual.

    And how many identity features and cards to keep.
    """

    ANALYSIS: ClassVar[str] = "clt-features"
    TITLE: ClassVar[str] = "clt features"
    PRESETS: ClassVar[dict[str, dict]] = {"gemma-clt-workshop": {"documents": 100}}

    documents: int = option(200, "parallel held-out verses per language", minimum=1)
    min_frequency: float = option(
        0.01, "share of a language's tokens a feature must be active on to count as used by it", minimum=0
    )
    specific_share: float = option(
        0.8, "share of a feature's (summed) frequency in one language to call it specific to it", minimum=0
    )
    identity: int = option(
        8, "identity features kept per language (highest identity score, for cards and steering)", minimum=1
    )
    cards: int = option(
        4, "feature cards per language (its best identity features), and of multilingual features", minimum=0
    )
    contexts: int = option(5, "top activating contexts per card and language", minimum=1)

    def validate(self) -> None:
        """Refuse shares outside their range."""
        if not 0 < self.specific_share <= 1:
            raise OptionError(f"--clt-features-specific-share is a share in (0, 1]; got {self.specific_share}.")
        if self.min_frequency > 1:
            raise OptionError(f"--clt-features-min-frequency is a share, at most 1; got {self.min_frequency}.")
