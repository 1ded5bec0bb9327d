"""Settings of the attribution graphs.

They are defined with the graphs, in [`workbench.clt.graph_options`][workbench.clt.graph_options].
"""

from workbench.clt.graph_options import TARGET_KINDS
from workbench.clt.graph_options import GraphOptions as Options

requires: tuple[str, ...] = ("clt-train",)

__all__ = ["TARGET_KINDS", "Options", "requires"]
