"""Settings of the steering experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import OptionError, RunOptions, option
from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ("clt-features",)


@dataclass(frozen=True)
class Options(Base):
    """The prompts, the language pairs, how many identity features are switched, and how hard."""

    ANALYSIS: ClassVar[str] = "clt-steer"
    TITLE: ClassVar[str] = "clt steer"
    # Gemma: strengths past 4 add nothing (the workshop's pairs are steered at 1-2 or not at all);
    # the full study steers every language towards four of different scripts.
    PRESETS: ClassVar[dict[str, dict]] = {
        "gemma-clt": {"prompts": 8, "strengths": (0.0, 1.0, 2.0, 4.0), "targets": ("en", "ru", "zh", "ar")},
        "gemma-clt-workshop": {"prompts": 8, "strengths": (0.0, 1.0, 2.0, 4.0)},
    }

    prompts: int = option(16, "held-out verses per source language used as prompts", minimum=1)
    prompt_tokens: int = option(12, "tokens of each prompt (verses cut to this; shorter ones skipped)", minimum=1)
    new_tokens: int = option(8, "greedy continuation length", minimum=1)
    features: int = option(8, "identity features per language switched (at most clt-features' --identity)", minimum=1)
    strengths: tuple[float, ...] = option(
        (0.0, 1.0, 2.0, 4.0, 8.0),
        "strengths s: source features a -> (1 - s) a, target features a -> a + s * (their mean where active)",
        minimum=0,
    )
    sources: tuple[str, ...] = option((), "prompt languages (default: the run's)")
    targets: tuple[str, ...] = option((), "languages steered towards (default: the run's)")

    def validate(self) -> None:
        """Refuse an empty sweep."""
        if not self.strengths:
            raise OptionError("--clt-steer-strengths is empty; give at least one, e.g. 0,2,8.")

    def check_run(self, run: RunOptions) -> None:
        """Refuse source or target languages outside the run's (their identity features come from it)."""
        for flag, chosen in (("--clt-steer-sources", self.sources), ("--clt-steer-targets", self.targets)):
            outside = [lang for lang in chosen if lang not in run.languages]
            if outside:
                raise OptionError(
                    f"{flag} {', '.join(outside)} are not among the run's --languages "
                    f"({', '.join(run.languages)}); add them there (their identity features come from them)."
                )
