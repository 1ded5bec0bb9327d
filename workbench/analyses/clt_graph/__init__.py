"""Attribution graphs of parallel prompts, and their feature overlap across languages per layer.

Graphs on the local replacement model (arXiv 2511.10840; Ameisen et al. 2025).
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.clt_graph.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.clt_graph.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
