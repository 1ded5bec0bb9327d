"""MWork's split of a model's layers into understanding, task-solving and generation (docs/methods.md §7).

Deactivation switches a language's neurons off in all layers or in one group at a time, to ask
where the language is handled: *understanding* (the first N layers), *task-solving* (the middle;
its attention and its FFN count as separate groups) and *generation* (the last M).
[`LayerGroups`][workbench.interventions.layer_groups.LayerGroups] holds the split and restricts a
neuron set to a group; the paper's downstream tasks use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.interventions.options import GROUPS
from workbench.neurons.sets import NeuronSet

UNDERSTANDING_SHARE = 0.25
"""The default understanding layers: this share of the depth."""
GENERATION_SHARE = 0.125
"""The default generation layers: this share of the depth."""


@dataclass(frozen=True)
class LayerGroups:
    """MWork's layer split: the first ``understanding`` layers, the last ``generation``, task-solving between.

    The paper tuned N and M on Chinese XQuAD for 32-layer models (its Appendix F, whose values
    we do not have). The defaults here are ours: the first quarter and the last eighth of the depth
    (8 and 4 of 32 layers; 4 and 2 of Gemma 3 270M's 18).
    """

    n_layers: int
    understanding: int
    generation: int

    def __post_init__(self) -> None:
        if self.understanding < 0 or self.generation < 0 or self.understanding + self.generation > self.n_layers:
            raise ValueError(
                f"{self.understanding} understanding + {self.generation} generation layers do not fit "
                f"in {self.n_layers} layers."
            )

    @classmethod
    def default(cls, n_layers: int, understanding: int | None = None, generation: int | None = None) -> LayerGroups:
        """The split of ``n_layers``: the sizes given, else the first quarter and the last eighth."""
        u = understanding if understanding is not None else min(n_layers, max(1, round(n_layers * UNDERSTANDING_SHARE)))
        # the automatic sizes always fit (a one-layer model has no generation layers); given ones are checked
        g = (
            generation
            if generation is not None
            else max(0, min(n_layers - u, max(1, round(n_layers * GENERATION_SHARE))))
        )
        return cls(n_layers, u, g)

    def layers(self, group: str) -> range:
        """The layers of a group (``all``, ``understanding``, ``task_attention``, ``task_ffn``, ``generation``)."""
        if group == "all":
            return range(self.n_layers)
        if group == "understanding":
            return range(self.understanding)
        if group == "generation":
            return range(self.n_layers - self.generation, self.n_layers)
        if group in ("task_attention", "task_ffn"):
            return range(self.understanding, self.n_layers - self.generation)
        raise ValueError(f"Unknown layer group {group!r}; choose from {', '.join(GROUPS)}.")

    def restrict(self, neurons: NeuronSet, group: str) -> NeuronSet:
        """The neurons of ``neurons`` in a group's layers (and, for task groups, structures)."""
        layers = self.layers(group)
        keep = {}
        for s, rows in neurons.neurons.items():
            if (group == "task_ffn" and s != "ffn") or (group == "task_attention" and s == "ffn"):
                continue
            keep[s] = rows[(rows[:, 0] >= layers.start) & (rows[:, 0] < layers.stop)]
        return NeuronSet(keep)


__all__ = ["GENERATION_SHARE", "UNDERSTANDING_SHARE", "LayerGroups"]
