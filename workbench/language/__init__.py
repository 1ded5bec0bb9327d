"""Which language a token is: offline identification of decoded vocabulary pieces.

Layer: above [`workbench.runs`][workbench.runs] (its labels are cached with the run's result helpers).
"""
