"""Settings of neuron fine-tuning and the enhancement experiment.

They are defined with them, in [`workbench.interventions.options`][workbench.interventions.options].
"""

from workbench.interventions.options import TARGETS, TrainOptions
from workbench.interventions.options import EnhancementOptions as Options

requires: tuple[str, ...] = ("plnd",)

__all__ = ["TARGETS", "Options", "TrainOptions", "requires"]
