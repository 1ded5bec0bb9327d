"""Steering the output language through transcoder features: one language's identity features off, another's on, against matched random controls (arXiv 2511.10840)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_steer.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
