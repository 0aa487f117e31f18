"""The human report: a rich table of layers, a summary and the findings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rfalint.analysis import RFStatus
from rfalint.analysis.border import LayerStatus
from rfalint.analysis.cost import FVCORE, regions
from rfalint.analysis.memory import fmt_bytes
from rfalint.analysis.plan import Candidate
from rfalint.api import CheckResult
from rfalint.graph import Kind, Window, fmt_axes

STATUS_STYLE = {LayerStatus.PRODUCTIVE: "green", LayerStatus.CRITICAL: "yellow",
                LayerStatus.UNPRODUCTIVE: "bold red", LayerStatus.HEAD: "dim"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Per-position nodes (activations, norms, dropout, reshapes) add nothing to the RF, and
# neither do parameter-free non-spatial ones: shown only with ``all_nodes``.
QUIET_KINDS = {Kind.POINTWISE, Kind.NONSPATIAL, Kind.INPUT}


def _geometry(analysis, node) -> str:
    """kernel/stride, and for convs the effective filter size k x jump: '3/1 (eff 12)'."""
    if not isinstance(node.geometry, Window):
        return ""
    effective = analysis.effective_kernel(node.id)
    if effective is None:
        return node.geometry.label()
    return f"{node.geometry.label()} (eff {fmt_axes(_number(e) for e in effective)})"


def _number(value) -> str:
    """A Fraction as '12' or, after upsampling, '1.5'."""
    return str(int(value)) if value == int(value) else f"{float(value):g}"


def _stride(rf) -> str:
    return fmt_axes(str(j) for j in rf.jump)


def _padding(rf) -> str:
    return "?" if rf.eff_padding is None else fmt_axes(rf.eff_padding)


# Optional columns (``--columns``; both with ``--all-nodes``): where each unit's field
# lies, docs/method.md §4. "?" marks offsets rfalint cannot determine.
EXTRA_COLUMNS = {"S": _stride, "P": _padding}


def _shown(result: CheckResult, node, all_nodes: bool) -> bool:
    if node.id == 0:
        return False
    if all_nodes or node.kind not in QUIET_KINDS:
        return True
    if node.kind is Kind.NONSPATIAL and node.params:  # the classifier head, gate layers
        return True
    return bool(node.gates)


def render_text(result: CheckResult, console: Console, all_nodes: bool = False,
                columns: tuple[str, ...] | None = None) -> None:
    """``columns``: names from :data:`EXTRA_COLUMNS` to add after r_max (default: all
    of them with ``all_nodes``, none otherwise)."""
    if columns is None:
        columns = tuple(EXTRA_COLUMNS) if all_nodes else ()
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    res = fmt_axes(graph.resolution)
    table = Table(title=f"{result.target} at {res} px  (input {tuple(graph.input_shape)})",
                  title_justify="left", header_style="bold")
    for column, justify in (("layer", "left"), ("type", "left"), ("kernel/stride", "left"),
                            ("output", "right"), ("r_min", "right"), ("r_max", "right"),
                            *((name, "right") for name in columns),
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
            label, node.op, _geometry(analysis, node),
            fmt_axes(size) if size else "x".join(map(str, node.out_shape[1:])),
            *_rf_cells(analysis, node.id),
            *(EXTRA_COLUMNS[name](rf) if rf else "" for name in columns),
            *cost, Text(status.value, style=STATUS_STYLE[status]))
    console.print(table)
    _summary(result, console)
    _findings(result, console)


def _rf_cells(analysis, node_id: int) -> tuple[str, str]:
    """r_min and r_max; ">=" marks a lower bound, "?" an RF an unknown op made unknowable."""
    rf, status = analysis.rfs[node_id], analysis.rf_status[node_id]
    if rf is None:
        unknown = status is RFStatus.UNKNOWN and node_id not in analysis.border.head
        return ("?", "?") if unknown else ("", "")
    mark = ">=" if status is RFStatus.LOWER_BOUND else ""
    return mark + fmt_axes(rf.r_min), mark + fmt_axes(rf.r_max)


def _summary(result: CheckResult, console: Console) -> None:
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    res = fmt_axes(graph.resolution)
    ref = analysis.reference_label()
    n_seq = len(border.sequence)
    lines = []
    # Without every path, RFs are lower bounds: the border can only come earlier.
    incomplete = "" if analysis.complete else " (incomplete: an op is not understood, RFA201)"
    at_least = "" if analysis.complete else "at least from "
    if not analysis.complete:
        lines.append("analysis INCOMPLETE: RFs downstream of an op rfalint does not understand "
                     "are lower bounds (>=); the border, tail and final RF below depend on them")
    for label, layer, attr in (("b_min", border.b_min, "r_in_min"),
                               ("b_max", border.b_max, "r_in_max")):
        if layer is None:
            lines.append(f"{label}: none (no layer of the main path is past the border at "
                         f"{ref}){incomplete}")
        else:
            lines.append(f"{label}: {at_least}{graph[layer.node].name} (conv #{layer.index} of "
                         f"{n_seq} on the main path, input r_{attr[5:]} "
                         f"{fmt_axes(getattr(layer, attr))} > {ref}){incomplete}")
    n_critical = sum(1 for layer in border.sequence
                     if border.status[layer.node] is LayerStatus.CRITICAL)
    tail_convs = [t for t in border.tail if graph[t].kind is Kind.CONV]
    lines.append(f"tail: {'at least ' if at_least else ''}{len(tail_convs)} conv layers "
                 f"({len(border.tail)} nodes); critical: {n_critical} conv layers on the main "
                 f"path{incomplete}")
    final = analysis.rf_final
    bound = "" if analysis.complete else ">="
    lines.append(f"final RF entering the readout: r_min {bound}{fmt_axes(final.r_min)}, "
                 f"r_max {bound}{fmt_axes(final.r_max)} vs input {res} px{incomplete}")
    if analysis.object_size is not None:
        lines.append(f"reference: object size {analysis.object_size.label()} (border, tail, "
                     f"critical and coverage compare RFs with {ref}, not the image)")
    lines += _output_lines(analysis)
    if graph.capture_mode == "real":
        lines.append("capture: the forward reads tensor values; ran on a real dummy input")
    if result.cost:
        lines += _cost_lines(result)
    if result.memory:
        lines += _memory_lines(result)
    if result.candidates:
        lines += estimate_lines(result.candidates, result.cost.params_total, result.cost.macs_total)
    console.print("\n".join(lines))


def _output_lines(analysis) -> list[str]:
    """One line per output of a model with several (detection levels, decoders): its own
    border and, with an object-size range, which sizes it sees whole."""
    if len(analysis.outputs) < 2 and not any(v.objects and v.objects.low != v.objects.high
                                              for v in analysis.outputs):
        return []
    lines = []
    for view in analysis.outputs:
        graph, border = analysis.graph, view.border
        final = view.final(analysis.rfs)
        ref = f"object {view.objects.label()}" if view.objects else \
            f"{fmt_axes(border.reference)} px"
        b_min = (f"b_min {graph[border.b_min.node].name} (#{border.b_min.index} of "
                 f"{len(border.sequence)})" if border.b_min else "no b_min")
        tail = sum(1 for t in border.tail if graph[t].kind is Kind.CONV)
        line = (f"output {view.name} ({graph[view.node].name}): r_min {fmt_axes(final.r_min)}, "
                f"r_max {fmt_axes(final.r_max)}, vs {ref}: {b_min}, tail {tail} conv layers")
        seen = view.seen(analysis.rfs)
        words = {"whole": "seen whole", "some_paths": "whole on some paths only",
                 "in_part": "seen only in part"}
        parts = [f"{words[k]} {_ranges(v)} px" for k, v in seen.items() if v is not None]
        lines.append(line + (f"; objects {', '.join(parts)}" if parts else ""))
    return lines


def _ranges(per_axis) -> str:
    texts = [f"{a}..{b}" if a != b else str(a) for a, b in per_axis]
    return texts[0] if len(set(texts)) == 1 else " x ".join(texts)


def _memory_lines(result: CheckResult) -> list[str]:
    memory, analysis = result.memory, result.analysis
    peak_at = analysis.graph[memory.peak_node].name
    lines = [f"activation memory (batch 1, {str(memory.dtype).removeprefix('torch.')}): peak "
             f"{fmt_bytes(memory.peak)} live at {peak_at}, {fmt_bytes(memory.total)} allocated "
             "over the forward (views and in-place ops allocate nothing)"]
    if analysis.border.tail:
        held, fraction = memory.share(analysis.border.tail)
        lines.append(f"the tail allocates {fmt_bytes(held)} ({fraction:.1%}) of the activation "
                     "memory")
    return lines


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


def estimate_lines(candidates: list[Candidate], before_params: int, before_macs: int) -> list[str]:
    """The 'Candidate fixes (estimated)' lines of the check report."""
    lines = ["Candidate fixes (estimated; `rfalint fix` writes them):"]
    for c in candidates:
        if c.figures is None:
            lines.append(f"  {c.strategy:<12} n/a: {c.reason}")
            continue
        f = c.figures
        lines.append(f"  {c.strategy:<12} params {before_params:,} -> {f.params:,}, "
                     f"MACs {before_macs / 1e6:,.2f} M -> {f.macs / 1e6:,.2f} M, "
                     f"tail {f.tail_convs} convs, r_max final {fmt_axes(f.r_max_final)} vs "
                     f"{f.reference_label()} px")
    return lines
