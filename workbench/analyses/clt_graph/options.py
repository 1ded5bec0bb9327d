"""Settings of the attribution graphs.

They are defined with the graphs, in [`workbench.clt.graphs.options`][workbench.clt.graphs.options].
"""

from workbench.clt.graphs.options import GraphOptions as Options

requires: tuple[str, ...] = ("clt-train",)

__all__ = ["Options", "requires"]
