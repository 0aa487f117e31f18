"""The captured layer graph as Graphviz DOT or Mermaid text, coloured by layer status.

Red: the unproductive tail; orange: critical; grey: the classifier head; white:
productive. The border layer b_min has a thick outline. Both are plain text, so no
Graphviz binary is needed (render DOT with any viewer, Mermaid in GitHub markdown).
Pointwise nodes (activations, norms, reshapes) are folded into the edges unless
``all_nodes`` is set; the edges then join their nearest shown producers. Labels give the
output size, the RF (r), the effective stride S and the effective padding P
(docs/method.md §4; "P ?" where offsets are unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

from rfalint.analysis import Analysis
from rfalint.graph import Kind, Node, Window, fmt_axes

# status -> (fill, outline, text colour)
STATUS_COLORS = {
    "productive": ("#ffffff", "#404040", "#000000"),
    "critical": ("#ffb74d", "#e65100", "#000000"),
    "unproductive": ("#ef7373", "#b71c1c", "#000000"),
    "head": ("#d9d9d9", "#8c8c8c", "#505050"),
}
FOLDED_KINDS = {Kind.POINTWISE}
LEGEND = "red: unproductive tail, orange: critical, grey: head, thick outline: b_min"


@dataclass
class _Shown:
    node: Node
    lines: list[str]
    status: str
    border: bool
    inputs: list[tuple[int, bool]]  # (shown producer id, is a gate input)


def _window(node: Node) -> str:
    return f" {node.geometry.label()}" if isinstance(node.geometry, Window) else ""


def _layout(analysis: Analysis, all_nodes: bool) -> list[_Shown]:
    graph, border = analysis.graph, analysis.border
    b_min = border.b_min.node if border.b_min else None
    visible = [n.id == 0 or all_nodes or n.kind not in FOLDED_KINDS or n.id in graph.outputs
               for n in graph]
    # For a folded node, the shown nodes its value comes from (graph order is topological).
    sources: list[list[tuple[int, bool]]] = []
    shown: list[_Shown] = []
    for node in graph:
        ins: list[tuple[int, bool]] = []
        for pos, src in enumerate(node.inputs):
            gate = pos in node.gates
            for edge in ([(src, False)] if visible[src] else sources[src]):
                item = (edge[0], gate or edge[1])
                if item not in ins:
                    ins.append(item)
        sources.append(ins)
        if not visible[node.id]:
            continue
        rf = analysis.rfs[node.id]
        size = node.spatial_out
        out = fmt_axes(size) if size else "x".join(map(str, node.out_shape[1:]))
        if node.kind is Kind.INPUT:
            lines = [node.name, "x".join(map(str, graph.input_shape))]
        else:
            lines = [node.name, f"{node.op}{_window(node)}"]
        detail = f"out {out}"
        if rf is not None:
            lo, hi = fmt_axes(rf.r_min), fmt_axes(rf.r_max)
            detail += f", r {lo}" if lo == hi else f", r {lo}..{hi}"
            pad = "?" if rf.eff_padding is None else fmt_axes(rf.eff_padding)
            detail += f", S {fmt_axes(str(j) for j in rf.jump)}, P {pad}"
        lines.append(detail)
        if node.id == b_min:
            lines.append("border layer b_min")
        shown.append(_Shown(node, lines, border.status[node.id].value, node.id == b_min, ins))
    return shown


def _title(analysis: Analysis) -> str:
    graph = analysis.graph
    return f"{graph.model_name} at {fmt_axes(graph.resolution)} px"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(analysis: Analysis, all_nodes: bool = False) -> str:
    lines = [
        f"digraph {_dot_string(analysis.graph.model_name)} {{",
        f"  label={_dot_string(_title(analysis) + ' - ' + LEGEND)};",
        "  labelloc=t;",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        "  edge [color=\"#606060\"];",
    ]
    shown = _layout(analysis, all_nodes)
    for item in shown:
        fill, outline, font = STATUS_COLORS[item.status]
        label = "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in item.lines)
        width = ", penwidth=3" if item.border else ""
        lines.append(f'  n{item.node.id} [label="{label}", fillcolor="{fill}", '
                     f'color="{outline}", fontcolor="{font}"{width}];')
    for item in shown:
        for src, gate in item.inputs:
            style = " [style=dashed]" if gate else ""
            lines.append(f"  n{src} -> n{item.node.id}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;") \
        .replace(">", "#gt;")


def to_mermaid(analysis: Analysis, all_nodes: bool = False) -> str:
    lines = [f"%% {_title(analysis)}", f"%% {LEGEND}", "flowchart TD"]
    shown = _layout(analysis, all_nodes)
    for item in shown:
        label = "<br/>".join(_mermaid_text(s) for s in item.lines)
        lines.append(f'  n{item.node.id}["{label}"]')
    for item in shown:
        for src, gate in item.inputs:
            lines.append(f"  n{src} {'-.->' if gate else '-->'} n{item.node.id}")
    for status, (fill, outline, font) in STATUS_COLORS.items():
        lines.append(f"  classDef {status} fill:{fill},stroke:{outline},color:{font}")
    for status in STATUS_COLORS:
        ids = [f"n{item.node.id}" for item in shown if item.status == status]
        if ids:
            lines.append(f"  class {','.join(ids)} {status}")
    for item in shown:
        if item.border:
            lines.append(f"  style n{item.node.id} stroke-width:4px")
    return "\n".join(lines) + "\n"


FORMATS = {"dot": to_dot, "mermaid": to_mermaid}
