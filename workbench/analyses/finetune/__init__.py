"""Enhancement: train only a language's neurons, measure every language (MWork Fig. 4, Table 6)."""

from workbench.analyses import lazy_exports
from workbench.analyses.finetune.options import Options, TrainOptions, requires

__all__ = ["Options", "TrainOptions", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
