"""Logit lens: the language of every layer's decoded tokens, and the latent language (MWork Fig. 1)."""

from workbench.analyses import lazy_exports
from workbench.analyses.lens.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
