"""Linear probes for language on the residual stream: from which layer a token's language is readable.

Linearly, on tokens shared between languages too (arXiv 2511.10840's question).
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.probe.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.probe.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
