"""The human report: a rich table of layers, a summary and the findings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rfalint.api import CheckResult
from rfalint.graph import Kind, Window
from rfalint.rules import fmt_axes

STATUS_STYLE = {"productive": "green", "critical": "yellow", "unproductive": "bold red",
                "head": "dim"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Parameter-free per-position nodes add nothing to the RF; shown only with --all-nodes.
QUIET_KINDS = {Kind.POINTWISE, Kind.NONSPATIAL, Kind.INPUT}


def _geometry(node) -> str:
    g = node.geometry
    if not isinstance(g, Window):
        return ""
    text = f"{fmt_axes(g.kernel)}/{fmt_axes(g.stride)}"
    if max(g.dilation) > 1:
        text += f" d{fmt_axes(g.dilation)}"
    return text + (" T" if g.transposed else "")


def _shown(result: CheckResult, node, all_nodes: bool) -> bool:
    if node.id == 0:
        return False
    if all_nodes or node.kind not in QUIET_KINDS or node.params:
        return True
    return bool(node.gates)


def render_text(result: CheckResult, console: Console, all_nodes: bool = False) -> None:
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    res = fmt_axes(graph.resolution)
    table = Table(title=f"{result.target} at {res} px  (input {tuple(graph.input_shape)})",
                  title_justify="left", header_style="bold")
    for column, justify in (("layer", "left"), ("type", "left"), ("kernel/stride", "left"),
                            ("output", "right"), ("r_min", "right"), ("r_max", "right"),
                            ("status", "left")):
        table.add_column(column, justify=justify)
    seq = {layer.node: layer.index for layer in border.sequence}
    for node in graph:
        if not _shown(result, node, all_nodes):
            continue
        rf = analysis.rfs[node.id]
        status = border.status[node.id]
        marker = f" #{seq[node.id]}" if node.id in seq else ""
        label = node.name + marker
        if border.b_min and node.id == border.b_min.node:
            label += "  << b_min"
        size = node.spatial_out
        table.add_row(
            label, node.op, _geometry(node),
            fmt_axes(size) if size else "x".join(map(str, node.out_shape[1:])),
            fmt_axes(rf.r_min) if rf else "", fmt_axes(rf.r_max) if rf else "",
            Text(status, style=STATUS_STYLE[status]))
    console.print(table)
    _summary(result, console)
    _findings(result, console)


def _summary(result: CheckResult, console: Console) -> None:
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    res = fmt_axes(graph.resolution)
    n_seq = len(border.sequence)
    lines = []
    for label, layer, attr in (("b_min", border.b_min, "r_in_min"),
                               ("b_max", border.b_max, "r_in_max")):
        if layer is None:
            lines.append(f"{label}: none (no layer of the main path is past the border at {res} px)")
        else:
            lines.append(f"{label}: {graph[layer.node].name} (conv #{layer.index} of {n_seq} on the "
                         f"main path, input {attr[5:]} {fmt_axes(getattr(layer, attr))} > {res} px)")
    n_critical = sum(1 for layer in border.sequence if border.status[layer.node] == "critical")
    tail_convs = [t for t in border.tail if graph[t].kind is Kind.CONV]
    lines.append(f"tail: {len(tail_convs)} conv layers ({len(border.tail)} nodes); "
                 f"critical: {n_critical} conv layers")
    final = analysis.rf_final
    lines.append(f"final RF entering the readout: r_min {fmt_axes(final.r_min)}, "
                 f"r_max {fmt_axes(final.r_max)} vs input {res} px")
    if graph.capture_mode == "real":
        lines.append("capture: the forward reads tensor values; ran on a real dummy input")
    console.print("\n".join(lines))


def _findings(result: CheckResult, console: Console) -> None:
    if not result.findings:
        console.print(Text("No findings.", style="green"))
        return
    console.print()
    explained: set[str] = set()
    for f in result.findings:
        line = Text()
        line.append(f"{f.code} ", style=SEVERITY_STYLE[f.severity.value])
        line.append(f"[{f.severity.value}] ")
        if f.layer:
            line.append(f"{f.layer}: ", style="bold")
        line.append(f.message)
        if f.remedy and f.code not in explained:
            line.append(f"  -> {f.remedy}", style="dim")
            explained.add(f.code)
        console.print(line)
    counts = {}
    for f in result.findings:
        counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    console.print(", ".join(f"{n} {sev}" for sev, n in counts.items()))
