"""The result of the clt-graph slice: every graph's summary, their overlaps, and the views drawn."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.clt.graphs.summary import GraphRow
from workbench.runs.results import Result as Base


@dataclass
class Result(Base):
    """Every graph's summary, the overlap of kept features across languages per layer, and views."""

    JSON = "clt-graph.json"

    languages: list[str]
    n_layers: int
    rows: list[GraphRow]
    jaccard: dict[str, list[float]]  # task (and "all") -> per layer mean over items and language pairs
    views: list[dict] = field(default_factory=list)  # small pruned graphs drawn in the report
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per graph (its kept features left out)."""
        return [row.summary() for row in self.rows]

    def jaccard_table(self) -> list[dict]:
        """One row per task (and ``all``): the overlap per layer."""
        return [
            {"tasks": task, **{f"layer {i}": v for i, v in enumerate(values)}} for task, values in self.jaccard.items()
        ]
