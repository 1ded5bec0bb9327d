"""Settings of model diffing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import OptionError, RunOptions, option
from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ("clt-train",)


@dataclass(frozen=True)
class Options(Base):
    """The fine-tuned model, the verses both are read on, and what the report shows."""

    ANALYSIS: ClassVar[str] = "clt-diff"
    TITLE: ClassVar[str] = "clt diff"

    tuned: str = option("", "the fine-tuned model: a finetune delta (.safetensors of a finetune run) applied to the "
                        "run's model, or a model of the same shape and tokenizer (zoo:NAME, e.g. from 'workbench zoo "
                        "finetune', or a folder)")  # fmt: skip
    documents: int = option(200, "parallel held-out verses per language both models are read on", minimum=1)
    top: int = option(12, "features that changed most, with cards", minimum=1)
    identity: int = option(8, "identity features per language whose strength is compared", minimum=1)
    contexts: int = option(4, "top activating contexts per card and language", minimum=1)
    task: str = option("bible", "the parallel prompt task whose first item is attributed before and after")
    language: str = option("", "the language of that prompt (default: the run's first)")

    def check_run(self, run: RunOptions) -> None:
        if not self.tuned:
            raise OptionError(
                "--clt-diff-tuned is needed: a finetune delta (.safetensors) or a model (zoo:NAME, folder)."
            )
        if self.language and self.language not in run.languages:
            raise OptionError(f"--clt-diff-language {self.language} is not among the run's --languages "
                              f"({', '.join(run.languages)}); add it there.")  # fmt: skip

    def check_model(self, model) -> None:
        from workbench.clt.attribution import check_hooked

        check_hooked(model)
