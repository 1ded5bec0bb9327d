"""Transcoder features per language: language-specific vs multilingual per layer (arXiv 2511.10840).

Frequency and selectivity per language, feature cards, agreement with PLND.
"""

from typing import TYPE_CHECKING

from workbench.analyses import lazy_exports
from workbench.analyses.clt_features.options import Options, requires

if TYPE_CHECKING:  # the type checker sees what __getattr__ loads on first use
    from workbench.analyses.clt_features.analysis import Result, figures, run, section, verdict

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
