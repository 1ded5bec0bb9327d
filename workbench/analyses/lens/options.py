"""Settings of the logit-lens analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import Options as Base
from workbench.runs.options import option

requires: tuple[str, ...] = ()
POSITIONS: tuple[str, ...] = ("sample", "all", "last")


@dataclass(frozen=True)
class Options(Base):
    """Which verses and positions the lens reads, and how many decoded tokens it labels."""

    ANALYSIS: ClassVar[str] = "lens"
    PRESETS: ClassVar[dict[str, dict]] = {"paper": {"documents": 16, "per_document": 8}}

    documents: int = option(6, "analysis documents per language", minimum=1)
    positions: str = option("sample", "positions the lens reads in each document", choices=POSITIONS)
    per_document: int = option(4, "positions per document with 'sample'", minimum=1)
    k: int = option(10, "top-k decoded tokens per layer and position", minimum=1)
    final_norm: bool = option(True, "decode through the final norm (--no-...-final-norm: without)")
    accuracy_documents: int = option(32, "held-out verses per language for the token classifier's accuracy", minimum=1)
