"""Settings of the deactivation experiment.

They are defined with it, in [`workbench.interventions.options`][workbench.interventions.options].
"""

from workbench.interventions.options import GROUPS, LANGUAGES
from workbench.interventions.options import DeactivationOptions as Options

requires: tuple[str, ...] = ("plnd",)

__all__ = ["GROUPS", "LANGUAGES", "Options", "requires"]
