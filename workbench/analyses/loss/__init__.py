"""Per-language next-token loss on held-out parallel verses: the baseline of every intervention."""

from workbench.analyses import lazy_exports
from workbench.analyses.loss.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
