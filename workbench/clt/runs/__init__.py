"""What the transcoder analyses keep in a run's store, and read back on resume.

[`transcoder`][workbench.clt.runs.transcoder] is the run's transcoder, trained or loaded by
``clt-train`` and loaded by the other ``clt-*`` analyses; [`measures`][workbench.clt.runs.measures]
measures it per language (quality, replacement loss, feature statistics), one part per language;
[`compare`][workbench.clt.runs.compare] measures several transcoders side by side (``workbench
clt-compare``: its options in [`compare_options`][workbench.clt.runs.compare_options], its page in
[`compare_report`][workbench.clt.runs.compare_report]).
"""
