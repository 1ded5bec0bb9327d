"""Settings of the deactivation experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.options import Options as Base
from workbench.options import OptionError, among_run, option
from workbench.selection import SET_KINDS

requires: tuple[str, ...] = ("plnd",)
GROUPS: tuple[str, ...] = ("all", "understanding", "task_attention", "task_ffn", "generation")
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ru", "ja", "ar")  # the paper's, when the run has them


@dataclass(frozen=True)
class Options(Base):
    """Whose neurons are switched off, which sets, layer groups and controls, and how much is measured.

    ``sets``: ``plnd`` (PLND's sets, which include the neurons every language shares),
    ``exclusive`` (those sets minus the shared neurons), ``lape`` (LAPE's FFN sets); each kind
    is its own experiment, side by side in the report.
    """

    ANALYSIS: ClassVar[str] = "ablate"
    PRESETS: ClassVar[dict[str, dict]] = {
        "paper": {"languages": LANGUAGES, "documents": 12, "sets": ("plnd",), "groups": GROUPS, "seeds": 3,
                  "new_tokens": 16},
    }  # fmt: skip

    languages: tuple[str, ...] = option((), "languages switched off and measured (default: the run's among "
                                        "en,de,zh,sw, else its first 4)")  # fmt: skip
    documents: int = option(6, "held-out verses per language", minimum=1)
    sets: tuple[str, ...] = option(("plnd", "exclusive"), "neuron sets to switch off, one experiment each",
                                   each_of=SET_KINDS)  # fmt: skip
    groups: tuple[str, ...] = option(("all",), "layer groups (MWork), 'all' always included", each_of=GROUPS)
    seeds: int = option(1, "count-matched random control sets per setting", minimum=1)
    understanding: int | None = option(None, "MWork understanding layers (auto: the first quarter)", minimum=0)
    generation: int | None = option(None, "MWork generation layers (auto: the last eighth)", minimum=0)
    prompt_tokens: int = option(8, "continuation prompts: the first tokens of each verse", minimum=2)
    new_tokens: int = option(8, "greedy continuation length (0: none)", minimum=0)

    DEMO_LANGUAGES: ClassVar[tuple[str, ...]] = ("en", "de", "zh", "sw")

    def validate(self) -> None:
        if "all" not in self.groups:
            raise OptionError("--ablate-groups must include 'all' (the whole set, used by every table).")
        if not self.sets:
            raise OptionError("--ablate-sets is empty; give plnd, exclusive or lape.")

    def check_run(self, run) -> None:
        self.language_list(list(run.languages))

    def language_list(self, run_languages: list[str]) -> list[str]:
        """The experiment's languages: as given (each must be among the run's), or the default."""
        if self.languages:
            return among_run(self.languages, run_languages, self.flag("languages"))
        return [lang for lang in run_languages if lang in self.DEMO_LANGUAGES] or run_languages[:4]
