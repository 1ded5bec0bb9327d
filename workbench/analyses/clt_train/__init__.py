"""Cross-layer transcoder: train one on the model's MLPs (or load one), measure how well it replaces them.

The transcoder of arXiv 2511.10840; quality per layer and language, and the replacement model's loss.
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.clt_train.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.clt_train.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
