"""Settings of the language probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import OptionError, option
from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options(Base):
    """The verses the probes are trained and scored on, and the fit."""

    ANALYSIS: ClassVar[str] = "probe"
    TITLE: ClassVar[str] = "language probe"
    PRESETS: ClassVar[dict[str, dict]] = {"gemma-clt-workshop": {"documents": 48, "heldout": 24}}

    documents: int = option(96, "parallel analysis verses per language the probes are trained on", minimum=1)
    heldout: int = option(48, "parallel held-out verses per language they are scored on", minimum=1)
    tokens: int = option(
        2000, "training tokens per language at most (as many for every language; held out: half)", minimum=1
    )
    l2: float = option(1e-3, "L2 penalty on the probe weights (standardised rows)", minimum=0)
    steps: int = option(100, "L-BFGS iterations per probe", minimum=1)
    readable: float = option(
        0.9, "accuracy on shared tokens from which the language counts as linearly readable", minimum=0
    )

    def validate(self) -> None:
        """Refuse a readability threshold above 1."""
        if self.readable > 1:
            raise OptionError(f"--probe-readable is an accuracy, at most 1; got {self.readable}.")
