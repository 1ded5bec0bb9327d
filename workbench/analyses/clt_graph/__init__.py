"""Attribution graphs of parallel prompts on the local replacement model, and their feature overlap across languages per layer (arXiv 2511.10840; Ameisen et al. 2025)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_graph.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
