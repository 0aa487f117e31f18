"""The versioned, deterministic JSON form of a check result.

Bump ``SCHEMA_VERSION`` on any breaking change; adding fields is not breaking.
"""

from __future__ import annotations

import json
from typing import Any

from rfalint.analysis.border import LayerStatus
from rfalint.analysis.cost import regions
from rfalint.api import CheckResult
from rfalint.graph import Kind, Window
from rfalint.report.stages import stages_json

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
        "eff_padding": _eff_padding(rf),
        "status": analysis.border.status[node_id].value,
        "rf_status": analysis.rf_status[node_id].value,
        "params": result.cost.params[node_id] if result.cost else None,
        "macs": result.cost.macs[node_id] if result.cost else None,
        "activation_bytes": result.memory.bytes[node_id] if result.memory else None,
    }
    if isinstance(node.geometry, Window):
        entry["kernel"] = list(node.geometry.kernel)
        entry["stride"] = list(node.geometry.stride)
        entry["dilation"] = list(node.geometry.dilation)
        entry["transposed"] = node.geometry.transposed
        effective = analysis.effective_kernel(node_id)
        if effective is not None:
            entry["effective_kernel"] = [_fraction(e) for e in effective]
    return entry


def _eff_padding(rf) -> list[int] | None:
    """P per axis (docs/method.md §4); null without spatial axes or when offsets are unknown."""
    return list(rf.eff_padding) if rf is not None and rf.eff_padding is not None else None


def reference_dict(analysis) -> dict[str, Any]:
    """What the border rules compared RFs with: the image or an object size."""
    objects = analysis.object_size
    return {"kind": "object" if objects is not None else "image",
            "size": list(analysis.reference),
            "object_size_range": [list(objects.low), list(objects.high)] if objects else None}


def outputs_list(analysis) -> list[dict[str, Any]]:
    """Per model output: its own border, tail and final RF, and with an object-size range
    the sizes it sees whole, on some paths only, and only in part (per axis, [lo, hi])."""
    graph, name = analysis.graph, analysis.layer_name
    out = []
    for view in analysis.outputs:
        border, final = view.border, view.final(analysis.rfs)
        seen = view.seen(analysis.rfs)
        out.append({
            "output": view.name,
            "node": name(view.node),
            "readout": name(border.readout),
            "rf_min_final": list(final.r_min),
            "rf_max_final": list(final.r_max),
            "reference": {"kind": "object" if view.objects else "image",
                          "size": list(border.reference),
                          "object_size_range": [list(view.objects.low), list(view.objects.high)]
                          if view.objects else None},
            "sequence": [name(layer.node) for layer in border.sequence],
            "b_min": name(border.b_min.node) if border.b_min else None,
            "b_min_index": border.b_min.index if border.b_min else None,
            "b_max": name(border.b_max.node) if border.b_max else None,
            "b_max_index": border.b_max.index if border.b_max else None,
            "tail": [name(t) for t in border.tail],
            "tail_conv_layers": sum(1 for t in border.tail if graph[t].kind is Kind.CONV),
            "objects_seen": {part: [list(r) for r in ranges] if ranges else None
                             for part, ranges in seen.items()} or None,
        })
    return out


def memory_summary(result: CheckResult) -> dict[str, Any] | None:
    """Activation memory at batch 1 in the model's dtype: peak live bytes (execution
    order; views and in-place ops allocate nothing), total allocated, and the tail's share."""
    memory = result.memory
    if memory is None:
        return None
    held, fraction = memory.share(result.analysis.border.tail)
    return {"dtype": str(memory.dtype).removeprefix("torch."), "batch": 1,
            "peak_bytes": memory.peak, "peak_at": result.analysis.layer_name(memory.peak_node),
            "allocated_bytes": memory.total, "tail_bytes": held, "tail_share": fraction}


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
            # incomplete: paths through an op rfalint does not understand are missing, so
            # the border is "at least from" b_min
            "complete": analysis.complete,
        },
        "tail": [name(t) for t in border.tail],
        **stages_json(analysis),
        "critical": [name(layer.node) for layer in border.sequence
                     if border.status[layer.node] is LayerStatus.CRITICAL],
        "outputs": outputs_list(analysis),
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
            "jump_final": [_fraction(j) for j in final.jump],
            "eff_padding_final": _eff_padding(final),
            "capture": graph.capture_mode,
            "complete": analysis.complete,
            "gates": [{"layer": name(node_id), "kind": str(getattr(kind, "value", kind))}
                      for node_id, kind in sorted(graph.gate_kinds.items())],
            "gates_included": analysis.gates_included,
            "reference": reference_dict(analysis),
            **cost_summary(result),
            "activation_memory": memory_summary(result),
            "candidates": candidates_summary(result),
        },
    }


def cost_summary(result: CheckResult) -> dict[str, Any]:
    """Totals (MACs: 1 fused multiply-add = 1; FLOPs = 2 x MACs) and tail/critical shares;
    every key is null when the check ran without the cost model."""
    cost = result.cost
    keys = ("params", "macs", "flops", "cost_counter", "cost_fallback", "skipped_ops",
            "params_unattributed", "macs_unattributed", "tail_cost", "critical_cost")
    if cost is None:
        return dict.fromkeys(keys)
    graph = result.analysis.graph
    shares = {}
    for region, ids in regions(result.analysis.border).items():
        share = cost.share(ids)
        shares[f"{region}_cost"] = {
            "nodes": len(ids),
            "conv_layers": sum(1 for i in ids if graph[i].kind is Kind.CONV),
            "params": share.params, "macs": share.macs,
            "params_share": share.params_fraction, "macs_share": share.macs_fraction,
        }
    return {
        "params": cost.params_total, "macs": cost.macs_total, "flops": cost.flops_total,
        "cost_counter": cost.counter, "cost_fallback": cost.fallback_reason,
        "skipped_ops": dict(sorted(cost.skipped_ops.items())),
        "params_unattributed": cost.params_unattributed,
        "macs_unattributed": cost.macs_unattributed,
        **shares,
    }


def candidates_summary(result: CheckResult) -> list[dict[str, Any]] | None:
    """Estimated fixes (params, MACs, tail conv layers, final r_max); null without the
    cost model, empty when there is no tail."""
    if result.candidates is None:
        return None
    return [{"strategy": c.strategy, "applicable": c.figures is not None,
             "reason": c.reason or None,
             "params": c.figures.params if c.figures else None,
             "macs": c.figures.macs if c.figures else None,
             "tail_conv_layers": c.figures.tail_convs if c.figures else None,
             "rf_max_final": list(c.figures.r_max_final) if c.figures else None}
            for c in result.candidates]


def to_json(result: CheckResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def to_json_all(results: list[CheckResult]) -> str:
    """A config-driven run (no MODEL): one document, models in configuration order."""
    return json.dumps({"schema_version": SCHEMA_VERSION,
                       "models": [to_dict(r) for r in results]}, indent=2) + "\n"
