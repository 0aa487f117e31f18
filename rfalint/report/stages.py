"""The stages table (``check --stages``) and its JSON form (docs/method.md §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfalint.analysis import Analysis
from rfalint.analysis.stages import NoStages, Stage, dif_sum, find_stages, unit_label
from rfalint.graph import fmt_axes

if TYPE_CHECKING:
    from rich.console import Console


def stages_or_note(analysis: Analysis) -> tuple[list[Stage] | None, str | None]:
    try:
        return find_stages(analysis), None
    except NoStages as exc:
        return None, str(exc)


def stages_json(analysis: Analysis) -> dict[str, Any]:
    """``stages``: per stage w0, c0 and per unit its nodes, IF and dIF; or null with a note."""
    stages, note = stages_or_note(analysis)
    if stages is None:
        return {"stages": None, "stages_note": note}
    graph = analysis.graph
    return {"stages": [
        {"stage": s.index, "w0": list(s.w0), "c0": s.c0,
         "units": [{"kind": u.kind, "nodes": [graph[n].name for n in u.nodes],
                    "convs": [graph[n].name for n in u.convs], "width": u.width_out,
                    "IF": s.IF[k], "dIF": s.dIF[k]}
                   for k, u in enumerate(s.units)]}
        for s in stages], "stages_note": None}


def render_stages(analysis: Analysis, console: Console) -> None:
    from rich.table import Table  # text output only: JSON reports import this module too
    stages, note = stages_or_note(analysis)
    if stages is None:
        console.print(f"stages: none ({note})")
        return
    graph = analysis.graph
    table = Table(title="stages of the main path (Information Field, alpha 3)",
                  title_justify="left", header_style="bold")
    for column, justify in (("stage", "right"), ("w0", "right"), ("c0", "right"),
                            ("unit", "left"), ("convs", "right"), ("width", "right"),
                            ("IF", "right"), ("dIF", "right")):
        table.add_column(column, justify=justify)
    for s in stages:
        for k, unit in enumerate(s.units):
            first = k == 0
            table.add_row(str(s.index) if first else "", fmt_axes(s.w0) if first else "",
                          str(s.c0) if first else "", unit_label(graph, unit),
                          str(len(unit.convs)), str(unit.width_out), f"{s.IF[k]:,.0f}",
                          "-" if s.dIF[k] is None else f"{s.dIF[k]:.3f}")
    console.print(table)
    console.print(f"units per stage {[len(s.units) for s in stages]}; dIF sum "
                  f"{dif_sum(stages):.3f}")
