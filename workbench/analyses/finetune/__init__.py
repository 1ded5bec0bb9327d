"""Enhancement: train only a language's neurons, measure every language (MWork Fig. 4, Table 6)."""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.finetune.options import Options, TrainOptions, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.finetune.analysis import Result, figures, run, section

__all__ = ["Options", "TrainOptions", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
