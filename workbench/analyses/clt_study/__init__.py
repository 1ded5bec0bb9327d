"""The transcoder paper's findings asked of a model, a verdict per claim (arXiv 2511.10840).

The numbers behind each claim come from the clt slices' results; the summary holds no corpus text.
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.clt_study.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.clt_study.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
