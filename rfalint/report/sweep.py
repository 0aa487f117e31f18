"""Text and JSON forms of a resolution sweep (:mod:`rfalint.sweep`)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rfalint.analysis.memory import fmt_bytes
from rfalint.graph import fmt_axes
from rfalint.report.json_report import SCHEMA_VERSION
from rfalint.sweep import Sweep, SweepRow, coverage_text, describe_ranges


def summary_line(result: Sweep) -> str:
    points = len(result.rows)
    good = sum(row.productive for row in result.rows)
    against = f" against object size {result.object_size}" if result.object_size else ""
    return (f"productive range (runs, no tail, final r_max covers the "
            f"{'object' if result.object_size else 'input'}){against}: "
            f"{describe_ranges(result.productive_ranges())} ({good} of {points} points)")


def render_sweep(result: Sweep, console: Console) -> None:
    ref = "object" if result.object_size else "input"
    table = Table(title=f"{result.target}: resolution sweep"
                        + (f" (object size {result.object_size})" if result.object_size else ""),
                  title_justify="left", header_style="bold")
    for column in ("res", "runs", "b_min", "tail convs", "tail params", "tail MACs",
                   "tail act. mem", "critical", "RFA103", f"r_max/{ref}", "act. peak"):
        table.add_column(column, justify="left" if column in ("b_min", "runs") else "right")
    for row in result.rows:
        table.add_row(*_cells(row), style="green" if row.productive else None)
    console.print(table)
    for row in result.rows:
        if row.error:
            console.print(Text(f"{fmt_axes(row.resolution)} px: {row.error}", style="dim"))
    incomplete = [fmt_axes(row.resolution) for row in result.rows if not row.complete]
    if incomplete:
        console.print(f"INCOMPLETE at {', '.join(incomplete)} px: an op rfalint does not "
                      "understand (RFA201; `rfalint check` names it) is on the way to a readout, "
                      "so RFs are lower bounds (>=): b_min can only come earlier, the tail and "
                      "coverage only grow, critical counts (?) are not vouched for, and these "
                      "points are never called productive")
    console.print(summary_line(result))
    console.print(f"{result.captures} capture(s) of the model (shapes only where possible), "
                  f"{result.replays} replay(s) of a capture at another size, "
                  f"{result.rf_computations} RF propagation(s); cost by rfalint's graph "
                  "counter (MACs: 1 multiply-add = 1)")


def _cells(row: SweepRow) -> tuple[str, ...]:
    res = fmt_axes(row.resolution)
    if not row.analysed:
        return (res, "no: collapses" if row.collapsed else "no: fails", "", "", "", "", "",
                "", "", "", "")
    b_min = f"{row.b_min} (#{row.b_min_index})" if row.b_min else "-"
    at_least = "" if row.complete else ">="  # RFs are lower bounds: see the note below
    critical = str(row.critical)
    if not row.complete:
        b_min = f"{b_min} or earlier" if row.b_min else "? (incomplete)"
        critical += "?"
    return (res, "yes" if row.runs else "no: head", b_min, f"{at_least}{row.tail_convs}",
            f"{at_least}{row.tail_params_share:.1%}", f"{at_least}{row.tail_macs_share:.1%}",
            f"{at_least}{row.tail_memory_share:.1%}", critical, str(row.degenerate),
            f"{at_least}{coverage_text(row)}", fmt_bytes(row.activation_peak))


def row_dict(row: SweepRow) -> dict[str, Any]:
    return {
        "resolution": list(row.resolution),
        "runs": row.runs,
        "complete": row.complete,
        "error": row.error,
        "b_min": row.b_min,
        "b_min_index": row.b_min_index,
        "tail_conv_layers": row.tail_convs if row.analysed else None,
        "tail_params_share": row.tail_params_share if row.analysed else None,
        "tail_macs_share": row.tail_macs_share if row.analysed else None,
        "tail_activation_share": row.tail_memory_share if row.analysed else None,
        "critical": row.critical if row.analysed else None,
        "degenerate_kernels": row.degenerate if row.analysed else None,
        "rf_max_final": list(row.r_max_final) if row.r_max_final else None,
        "reference": list(row.reference) if row.reference else None,
        "coverage": list(row.coverage) if row.coverage else None,
        "activation_peak_bytes": row.activation_peak,
        "productive": row.productive,
        "outputs": row.outputs,
    }


def sweep_json(result: Sweep) -> str:
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "model": result.target,
        "object_size": result.object_size,
        "rows": [row_dict(r) for r in result.rows],
        "productive_ranges": [list(r) for r in result.productive_ranges()],
        "summary": summary_line(result),
        "captures": result.captures,
        "replays": result.replays,
        "rf_computations": result.rf_computations,
    }, indent=2) + "\n"
