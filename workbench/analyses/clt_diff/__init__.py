"""Model diffing through the base model's transcoder: what fine-tuning changed in feature frequency, magnitude, reconstruction error, language identity, and one prompt's graph (arXiv 2511.10840)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_diff.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
