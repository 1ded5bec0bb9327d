"""Settings of the attribution graphs, defined once: which prompts, what a graph explains, how it is pruned.

They live with the graphs that read them: the ``clt-graph`` slice exposes them as its ``Options``
(the command line is generated from them), and ``clt-diff`` prunes its graphs before and after
fine-tuning with their default thresholds. Importing this module imports no torch, so the command
line can check them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from workbench.runs.options import OptionError, option
from workbench.runs.options import Options as Base

if TYPE_CHECKING:
    from workbench.models.model import Model


@dataclass(frozen=True)
class GraphOptions(Base):
    """Which prompts, what the graphs explain, and how they are pruned."""

    ANALYSIS: ClassVar[str] = "clt-graph"
    TITLE: ClassVar[str] = "clt graph"
    PRESETS: ClassVar[dict[str, dict]] = {
        "gemma-clt": {"tasks": ("antonym",), "max_features": 2048},
        "gemma-clt-workshop": {"tasks": ("antonym",), "max_features": 1024},
    }

    tasks: tuple[str, ...] = option(
        (), "tasks of the parallel prompt set (default: all; antonym, weekday, month, number, bible)"
    )
    prompts: str = option(
        "",
        "a prompt file instead of the shipped set: JSON of its shape, or text with one prompt "
        "per line (attributed in the run's first language's name)",
    )
    prompt: str = option("", "one prompt to attribute instead of a set")
    target: str = option(
        "logits",
        "what the graph explains: logits (the top ones covering --probability), answer "
        "(each prompt's expected answer), token:TEXT (one token), or language:LANG (LANG's mean "
        "unembedding minus the vocabulary's)",
    )
    probability: float = option(0.95, "logit targets: the top logits covering this probability", minimum=0)
    max_logits: int = option(5, "logit targets: at most this many", minimum=1)
    node_threshold: float = option(0.8, "pruning: keep the nodes holding this share of influence", minimum=0)
    edge_threshold: float = option(0.98, "pruning: keep the edges holding this share of influence", minimum=0)
    max_features: int = option(4096, "feature nodes per graph at most (visited by influence)", minimum=1)
    batch: int = option(32, "targets per backward pass", minimum=1)
    views: int = option(
        1, "tasks whose first item is drawn as an interactive graph per language in the report", minimum=0
    )
    export: bool = option(False, "also write every graph as circuit-tracer JSON (graphs/ in the --out folder)")

    def validate(self) -> None:
        """Refuse shares outside [0, 1], an unknown target, and a prompt given twice."""
        for flag, value in (
            ("--clt-graph-probability", self.probability),
            ("--clt-graph-node-threshold", self.node_threshold),
            ("--clt-graph-edge-threshold", self.edge_threshold),
        ):
            if not 0 <= value <= 1:
                raise OptionError(f"{flag} is a share in [0, 1]; got {value}.")
        if not (self.target in ("logits", "answer") or self.target.startswith(("token:", "language:"))):
            raise OptionError(f"--clt-graph-target {self.target!r}: give logits, answer, token:TEXT or language:LANG.")
        if self.target.startswith("token:") and not self.target[len("token:") :]:
            raise OptionError("--clt-graph-target token: needs the token's text, e.g. token:' big'.")
        if self.prompt and self.prompts:
            raise OptionError("Give --clt-graph-prompt or --clt-graph-prompts, not both.")

    def check_model(self, model: Model) -> None:
        """Refuse a model attribution cannot run on (a bridged one), before anything is trained."""
        from workbench.clt.graphs.attribution import check_hooked

        check_hooked(model)
