"""FFN detectors and combinators: sparsity, sharing between languages, layer similarity (arXiv 2404.13855)."""

from workbench.analyses import lazy_exports
from workbench.analyses.ffn.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
