"""Attribution graphs on the local replacement model (Ameisen et al. 2025, "Circuit Tracing").

Made in three steps: [`local_replacement`][workbench.clt.graphs.local_replacement] holds the
prompt's frozen forward pass with the transcoder in place of the MLPs,
[`direct_effects`][workbench.clt.graphs.direct_effects] computes the edges, and
[`attribution`][workbench.clt.graphs.attribution] builds the [`Graph`][workbench.clt.graphs.graph.Graph]
([`graph`][workbench.clt.graphs.graph]: influence, pruning, scores) for the targets that
[`targets`][workbench.clt.graphs.targets] names. Then [`summary`][workbench.clt.graphs.summary]
puts a graph in one row and compares languages, [`view`][workbench.clt.graphs.view] draws one,
[`stored_views`][workbench.clt.graphs.stored_views] keeps small ones for the report, and
[`export`][workbench.clt.graphs.export] writes circuit-tracer's graph JSON, checked against
[`schema`][workbench.clt.graphs.schema]. Their settings are [`options`][workbench.clt.graphs.options]
(no torch: importing this package and that module reads the command line at once).
"""
