"""Settings of model diffing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from workbench.runs.options import OptionError, RunOptions, option
from workbench.runs.options import Options as Base

if TYPE_CHECKING:
    from workbench.models.model import Model

requires: tuple[str, ...] = ("clt-train",)
RUN_FINETUNE = "finetune"
"""``--clt-diff-tuned finetune[:LANG]``: this run's own finetune delta."""


@dataclass(frozen=True)
class Options(Base):
    """The fine-tuned model, the verses both are read on, and what the report shows."""

    ANALYSIS: ClassVar[str] = "clt-diff"
    TITLE: ClassVar[str] = "clt diff"
    PRESETS: ClassVar[dict[str, dict]] = {"gemma-clt": {"tuned": RUN_FINETUNE, "documents": 50}}

    tuned: str = option(
        "",
        "the fine-tuned model: 'finetune' or 'finetune:LANG' (this run's finetune of LANG's "
        "neurons, the largest training size; runs finetune first), a finetune delta (.safetensors of "
        "a finetune run) applied to the run's model, or a model of the same shape and tokenizer "
        "(zoo:NAME, e.g. from 'workbench zoo finetune', or a folder)",
    )
    documents: int = option(200, "parallel held-out verses per language both models are read on", minimum=1)
    top: int = option(12, "features that changed most, with cards", minimum=1)
    identity: int = option(8, "identity features per language whose strength is compared", minimum=1)
    contexts: int = option(4, "top activating contexts per card and language", minimum=1)
    task: str = option("bible", "the parallel prompt task whose first item is attributed before and after")
    language: str = option("", "the language of that prompt (default: the run's first)")

    @property
    def run_finetune(self) -> bool:
        """Whether the fine-tuned model is this run's own finetune."""
        return self.tuned.partition(":")[0] == RUN_FINETUNE

    @property
    def finetune_language(self) -> str:
        """The language of ``finetune:LANG`` ("" for the finetune's first target)."""
        return self.tuned.partition(":")[2] if self.run_finetune else ""

    def needs(self) -> tuple[str, ...]:
        """``finetune`` where the fine-tuned model is this run's own finetune."""
        return (RUN_FINETUNE,) if self.run_finetune else ()

    def check_run(self, run: RunOptions) -> None:
        """Refuse a missing fine-tuned model, and languages outside the run's."""
        if not self.tuned:
            raise OptionError(
                "--clt-diff-tuned is needed: 'finetune' (this run's), a finetune delta (.safetensors) "
                "or a model (zoo:NAME, folder)."
            )
        if self.finetune_language and self.finetune_language not in run.languages:
            raise OptionError(
                f"--clt-diff-tuned {self.tuned}: {self.finetune_language} is not among the run's "
                f"--languages ({', '.join(run.languages)})."
            )
        if self.language and self.language not in run.languages:
            raise OptionError(
                f"--clt-diff-language {self.language} is not among the run's --languages "
                f"({', '.join(run.languages)}); add it there."
            )

    def check_model(self, model: Model) -> None:
        """Refuse a model attribution cannot run on (a bridged one), before the transcoder is trained."""
        from workbench.clt.graphs.attribution import check_hooked

        check_hooked(model)
