"""Settings of the loss analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import Options as Base
from workbench.runs.options import option

requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options(Base):
    """How many held-out verses each language's loss is measured on."""

    ANALYSIS: ClassVar[str] = "loss"
    PRESETS: ClassVar[dict[str, dict]] = {"paper": {"documents": 32}}

    documents: int = option(12, "held-out documents per language", minimum=1)
