"""The human report: a rich table of layers, a summary and the findings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rfalint.analysis.cost import FVCORE, regions
from rfalint.api import CheckResult
from rfalint.fix import estimate_lines
from rfalint.graph import Kind, Window
from rfalint.rules import fmt_axes

STATUS_STYLE = {"productive": "green", "critical": "yellow", "unproductive": "bold red",
                "head": "dim"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Parameter-free per-position nodes add nothing to the RF; shown only with --all-nodes.
QUIET_KINDS = {Kind.POINTWISE, Kind.NONSPATIAL, Kind.INPUT}


def _geometry(node) -> str:
    return node.geometry.label() if isinstance(node.geometry, Window) else ""


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
                            *((("params", "right"), ("MACs (M)", "right")) if result.cost else ()),
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
        cost = _cost_cells(result, node.id)
        table.add_row(
            label, node.op, _geometry(node),
            fmt_axes(size) if size else "x".join(map(str, node.out_shape[1:])),
            fmt_axes(rf.r_min) if rf else "", fmt_axes(rf.r_max) if rf else "",
            *cost, Text(status, style=STATUS_STYLE[status]))
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
                         f"main path, input r_{attr[5:]} {fmt_axes(getattr(layer, attr))} > {res} px)")
    n_critical = sum(1 for layer in border.sequence if border.status[layer.node] == "critical")
    tail_convs = [t for t in border.tail if graph[t].kind is Kind.CONV]
    lines.append(f"tail: {len(tail_convs)} conv layers ({len(border.tail)} nodes); "
                 f"critical: {n_critical} conv layers on the main path")
    final = analysis.rf_final
    lines.append(f"final RF entering the readout: r_min {fmt_axes(final.r_min)}, "
                 f"r_max {fmt_axes(final.r_max)} vs input {res} px")
    if graph.capture_mode == "real":
        lines.append("capture: the forward reads tensor values; ran on a real dummy input")
    if result.cost:
        lines += _cost_lines(result)
    if result.candidates:
        lines += estimate_lines(result.candidates, result.cost.params_total, result.cost.macs_total)
    console.print("\n".join(lines))


def _cost_cells(result: CheckResult, node_id: int) -> tuple[str, ...]:
    """Params as a count, MACs in millions; blank where the node costs nothing."""
    if result.cost is None:
        return ()
    params, macs = result.cost.params[node_id], result.cost.macs[node_id]
    mega = "" if not macs else "<0.01" if macs < 5_000 else f"{macs / 1e6:.2f}"
    return (f"{params:,}" if params else "", mega)


def _si(value: int, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.2f} {prefix} {unit}"
    return f"{value} {unit}"


def _cost_lines(result: CheckResult) -> list[str]:
    cost, graph = result.cost, result.analysis.graph
    counter = "fvcore" if cost.counter == FVCORE else "rfalint's graph counter"
    lines = [f"cost ({counter}): {cost.params_total:,} params, {_si(cost.macs_total, 'MACs')} "
             f"= {_si(cost.flops_total, 'FLOPs')} (1 MAC = 1 multiply-add, FLOPs = 2 x MACs; "
             "adds, pools, norms, activations: 0)"]
    if cost.fallback_reason:
        instead = "" if cost.counter == "fvcore" else "; counted on rfalint's graph instead"
        lines.append(f"cost: {cost.fallback_reason}{instead}")
    loose = [text for value, text in (
        (cost.params_unattributed, f"{cost.params_unattributed:,} params"),
        (cost.macs_unattributed, _si(cost.macs_unattributed, "MACs"))) if value]
    if loose:
        lines.append(f"cost: {' and '.join(loose)} belong to no layer of the graph "
                     "(counted in the totals)")
    for region, ids in regions(result.analysis.border).items():
        if not ids:
            continue
        convs = [i for i in ids if graph[i].kind is Kind.CONV]
        off_path = len(set(convs) - set(result.analysis.border.main_path))
        share = cost.share(ids)
        who = "the tail" if region == "tail" else "the critical nodes"
        verb = "holds" if region == "tail" else "hold"
        lines.append(f"{who} ({len(convs)} conv layer{'' if len(convs) == 1 else 's'}"
                     f"{f', {off_path} off the main path' if off_path else ''}) {verb} "
                     f"{share.params_fraction:.1%} of params and {share.macs_fraction:.1%} of MACs")
    if cost.skipped_ops:
        who = "fvcore" if cost.counter == FVCORE else "the graph counter"
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(cost.skipped_ops.items()))
        lines.append(f"{who} skipped (counted as 0 MACs): {ops}")
    return lines


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
