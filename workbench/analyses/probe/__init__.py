"""Linear probes for language on the residual stream: from which layer a token's language is linearly readable (arXiv 2511.10840's question)."""

from workbench.analyses import lazy_exports
from workbench.analyses.probe.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
