"""The run machinery every analysis shares.

Options, results that save and load themselves, the store of finished parts, the slice registry,
the job loop, the HTML report, static images, plotting style and data-parallel helpers.

Layer: above [`workbench.data`][workbench.data]. It knows the *protocol* of a slice, never an
analysis: the analyses register themselves in [`workbench.runs.slices`][workbench.runs.slices].
"""
