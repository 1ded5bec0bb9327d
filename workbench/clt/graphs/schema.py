"""The schema of circuit-tracer's graph JSON, and the check of a file against it.

The field lists follow circuit-tracer's ``frontend/graph_models.py`` (``Metadata``, ``QParams``,
``Node``, ``Link``); [`workbench.clt.graphs.export`][workbench.clt.graphs.export] writes files of this format and
reads them back through [`validate_circuit_tracer`][workbench.clt.graphs.schema.validate_circuit_tracer].
"""

from __future__ import annotations

from workbench.errors import WorkbenchError

_FLOAT, _OPT_FLOAT = (float, int), (float, int, type(None))
METADATA_FIELDS = {
    "slug": (str,),
    "scan": (str,),
    "transcoder_list": (list,),
    "prompt_tokens": (list,),
    "prompt": (str,),
    "node_threshold": _FLOAT,
    "schema_version": (int,),
}
"""The graph's ``metadata``: each field and the Python types it may hold (after ``json.loads``)."""
QPARAMS_FIELDS = {
    "pinnedIds": (list,),
    "supernodes": (list,),
    "linkType": (str,),
    "clickedId": (str,),
    "sg_pos": (str,),
}
"""``qParams``, the viewer's initial state, likewise."""
NODE_FIELDS = {
    "node_id": (str,),
    "feature": (int,),
    "layer": (str,),
    "ctx_idx": (int,),
    "feature_type": (str,),
    "token_prob": _FLOAT,
    "is_target_logit": (bool,),
    "run_idx": (int,),
    "reverse_ctx_idx": (int,),
    "jsNodeId": (str,),
    "clerp": (str,),
    "influence": _OPT_FLOAT,
    "activation": _OPT_FLOAT,
}
"""Each of ``nodes``, likewise."""
LINK_FIELDS = {"source": (str,), "target": (str,), "weight": _FLOAT}
"""Each of ``links``, likewise."""
TOP_FIELDS = {"metadata": (dict,), "qParams": (dict,), "nodes": (list,), "links": (list,)}
"""The file's top level, likewise."""


def _check_fields(record: object, fields: dict[str, tuple[type, ...]], where: str) -> dict:
    """Refuse a record that is not an object, or misses or mistypes one of ``fields`` (bools are not ints).

    Returns:
        The record.
    """
    if not isinstance(record, dict):
        raise WorkbenchError(f"{where} is not a JSON object. Re-export the graph with write_circuit_tracer.")
    for name, types in fields.items():
        if name not in record:
            raise WorkbenchError(f"{where} has no field {name!r}. Re-export the graph with write_circuit_tracer.")
        value = record[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise WorkbenchError(
                f"{where}: field {name!r} is {type(value).__name__}, not {wanted}. "
                "Re-export the graph with write_circuit_tracer."
            )
    return record


def validate_circuit_tracer(data: object) -> dict:
    """Check ``data`` against the format's schema.

    Every field present with its type, node ids unique, every link between known nodes. Extra
    fields are allowed (later versions add some).

    Returns:
        ``data``.

    Raises:
        WorkbenchError: The first thing wrong, by the field's name.
    """
    data = _check_fields(data, TOP_FIELDS, "The graph file")
    _check_fields(data["metadata"], METADATA_FIELDS, "metadata")
    _check_fields(data["qParams"], QPARAMS_FIELDS, "qParams")
    ids: set[str] = set()
    for i, node in enumerate(data["nodes"]):
        _check_fields(node, NODE_FIELDS, f"nodes[{i}]")
        if node["node_id"] in ids:
            raise WorkbenchError(f"nodes[{i}]: node_id {node['node_id']!r} appears twice; node ids must be unique.")
        ids.add(node["node_id"])
    for i, link in enumerate(data["links"]):
        _check_fields(link, LINK_FIELDS, f"links[{i}]")
        for end in ("source", "target"):
            if link[end] not in ids:
                raise WorkbenchError(f"links[{i}]: {end} {link[end]!r} is no node's node_id.")
    return data


__all__ = ["LINK_FIELDS", "METADATA_FIELDS", "NODE_FIELDS", "QPARAMS_FIELDS", "TOP_FIELDS", "validate_circuit_tracer"]
