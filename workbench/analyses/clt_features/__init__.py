"""Transcoder features per language: frequency, selectivity, language-specific vs multilingual per layer, feature cards, agreement with PLND (arXiv 2511.10840)."""

from workbench.analyses import lazy_exports
from workbench.analyses.clt_features.options import Options, requires

__all__ = ["Options", "requires", "run", "Result", "figures", "section", "verdict"]
__getattr__ = lazy_exports(__name__, "analysis", ("run", "Result", "figures", "section", "verdict"))
