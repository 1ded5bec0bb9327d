"""The transcoder paper's findings asked of a model: the numbers behind each claim from the clt slices' results, a verdict per claim, no corpus text (arXiv 2511.10840)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_study.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
