"""Settings of PLND (and LAPE, counted in the same passes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from workbench.neurons.selection import RULES, STRUCTURES, Rule, Selection
from workbench.runs.options import OptionError, option
from workbench.runs.options import Options as Base

if TYPE_CHECKING:
    from workbench.models.model import Model

requires: tuple[str, ...] = ()
_DEFAULT = Selection()


@dataclass(frozen=True)
class Options(Base):
    """The documents PLND reads, the structures it scores, and the selection rule.

    The rule's defaults are [`Selection`][workbench.neurons.selection.Selection]'s.
    """

    ANALYSIS: ClassVar[str] = "plnd"
    PRESETS: ClassVar[dict[str, dict]] = {"paper": {"documents": 64}}

    documents: int = option(32, "analysis documents per language", minimum=1)
    structures: tuple[str, ...] = option(STRUCTURES, "neuron structures scored", each_of=STRUCTURES)
    rule: str = option(
        _DEFAULT.rule,
        "when a neuron is activated for a document: top fraction / top-k of its layer, or importance >= value",
        choices=RULES,
    )
    value: float = option(_DEFAULT.value, "the fraction, k, or epsilon of the rule")
    specificity: float = option(_DEFAULT.specificity, "share of a language's documents a neuron must be activated for")
    exclusive: bool = option(_DEFAULT.exclusive, "drop the neurons specific to every language")
    include_bos: bool = option(False, "count the BOS position in importances")

    def validate(self) -> None:
        """Refuse no structure, and a selection rule that cannot select."""
        if not self.structures:
            raise OptionError("--plnd-structures is empty; give at least one of " + ", ".join(STRUCTURES) + ".")
        try:
            self.selection()
        except ValueError as exc:
            raise OptionError(f"{exc} (--plnd-rule, --plnd-value, --plnd-specificity)") from None

    def check_model(self, model: Model) -> None:
        """Refuse structures the model does not have."""
        from workbench.neurons.importance import check_structures_fit

        check_structures_fit(model, list(self.structures))

    def selection(self) -> Selection:
        """The selection rule these options give."""
        rule = cast(Rule, self.rule)  # one of RULES: the option's choices
        return Selection(rule, self.value, self.specificity, self.exclusive)
