"""The versioned, deterministic JSON form of a check result.

Bump ``SCHEMA_VERSION`` on any breaking change; adding fields is not breaking.
"""

from __future__ import annotations

import json
from typing import Any

from rfalint.api import CheckResult
from rfalint.graph import Window

SCHEMA_VERSION = 1


def _fraction(value) -> int | float:
    return int(value) if value == int(value) else float(value)


def layer_dict(result: CheckResult, node_id: int) -> dict[str, Any]:
    analysis = result.analysis
    node = analysis.graph[node_id]
    rf = analysis.rfs[node_id]
    entry: dict[str, Any] = {
        "name": node.name,
        "type": node.op,
        "kind": node.kind.value,
        "out_shape": list(node.out_shape[1:]),
        "r_min": list(rf.r_min) if rf else None,
        "r_max": list(rf.r_max) if rf else None,
        "jump": [_fraction(j) for j in rf.jump] if rf else None,
        "status": analysis.border.status[node_id],
    }
    if isinstance(node.geometry, Window):
        entry["kernel"] = list(node.geometry.kernel)
        entry["stride"] = list(node.geometry.stride)
        entry["dilation"] = list(node.geometry.dilation)
        entry["transposed"] = node.geometry.transposed
    return entry


def to_dict(result: CheckResult) -> dict[str, Any]:
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    name = analysis.layer_name
    final = analysis.rf_final
    return {
        "schema_version": SCHEMA_VERSION,
        "model": result.target,
        "input_shape": list(graph.input_shape),
        "layers": [layer_dict(result, n.id) for n in graph if n.id != 0],
        "sequence": [name(layer.node) for layer in border.sequence],
        "border": {
            "b_min": name(border.b_min.node) if border.b_min else None,
            "b_min_index": border.b_min.index if border.b_min else None,
            "b_max": name(border.b_max.node) if border.b_max else None,
            "b_max_index": border.b_max.index if border.b_max else None,
        },
        "tail": [name(t) for t in border.tail],
        "critical": [name(layer.node) for layer in border.sequence
                     if border.status[layer.node] == "critical"],
        "findings": [
            {"code": f.code, "severity": f.severity.value, "layer": f.layer,
             "message": f.message, "remedy": f.remedy}
            for f in result.findings
        ],
        "summary": {
            "resolution": list(graph.resolution),
            "readout": name(border.readout),
            "rf_max_final": list(final.r_max),
            "rf_min_final": list(final.r_min),
            "capture": graph.capture_mode,
        },
    }


def to_json(result: CheckResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"
