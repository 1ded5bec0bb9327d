"""Steering the output language with transcoder features, against matched random controls (arXiv 2511.10840).

One language's identity features off, another's on.
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.clt_steer.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.clt_steer.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
