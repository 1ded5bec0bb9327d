"""Settings of the study summary: none of its own (it reads the clt slices' results)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ("clt-train", "clt-features", "clt-steer", "clt-graph")


@dataclass(frozen=True)
class Options(Base):
    """The study summary reads the transcoder, features, steering and graph results of the run."""

    ANALYSIS: ClassVar[str] = "clt-study"
    TITLE: ClassVar[str] = "clt study"
