"""PLND and LAPE: the language-specific neurons of every layer and structure (MWork Fig. 3)."""

from workbench.analyses import lazy_exports
from workbench.analyses.plnd.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
