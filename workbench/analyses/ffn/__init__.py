"""FFN detectors and combinators: sparsity, sharing between languages, layer similarity (arXiv 2404.13855)."""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.ffn.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.ffn.analysis import Result, figures, run, section

__all__ = ["Options", "requires", "run", "Result", "figures", "section"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section"))
