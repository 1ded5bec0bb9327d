"""Deactivation: switch a language's neurons off and measure every language (MWork Tables 1-5)."""

from workbench.analyses import lazy_exports
from workbench.analyses.ablate.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
