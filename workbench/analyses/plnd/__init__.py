"""PLND and LAPE: the language-specific neurons of every layer and structure (MWork Fig. 3)."""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.plnd.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.plnd.analysis import Result, figures, run, section

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
