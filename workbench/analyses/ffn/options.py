"""Settings of the FFN detector/combinator analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import Options as Base
from workbench.runs.options import option

requires: tuple[str, ...] = ()
POSITIONS: tuple[str, ...] = ("all", "last")


@dataclass(frozen=True)
class Options(Base):
    """Which verses and positions give the FFN rows, what counts as zero, and other models to compare."""

    ANALYSIS: ClassVar[str] = "ffn"
    PRESETS: ClassVar[dict[str, dict]] = {"paper": {"documents": 64}}

    documents: int = option(64, "analysis verses per language (and as many unrelated ones)", minimum=2)
    positions: str = option("all", "FFN rows: every position or each verse's last", choices=POSITIONS)
    tolerance: float | None = option(
        None, "|activation| counted as zero (auto: 0 for ReLU, 0.01 for GELU/SiLU)", minimum=0
    )
    include_bos: bool = option(False, "count the BOS position in FFN metrics")
    compare_models: tuple[str, ...] = option((), "other models (names or folders) for layer-by-layer similarity")
