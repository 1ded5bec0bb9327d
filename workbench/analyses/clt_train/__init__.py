"""Cross-layer transcoder: train one on the model's MLPs (or load one) and measure how well it replaces them (arXiv 2511.10840)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_train.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
