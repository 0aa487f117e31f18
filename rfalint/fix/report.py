"""The before/after and trade-off tables that ``fix`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from rfalint.analysis.memory import fmt_bytes
from rfalint.analysis.plan import Figures
from rfalint.graph import fmt_axes

if TYPE_CHECKING:
    from rfalint.fix import FixResult


def cells(fig: Figures) -> tuple[str, str, str, str, str, str]:
    """params, MACs (millions), peak activation memory, tail conv layers, final r_max vs
    the reference (the input, or the object size), and the sum of the IF gains."""
    peak = "" if fig.activation_peak is None else fmt_bytes(fig.activation_peak)
    return (f"{fig.params:,}", f"{fig.macs / 1e6:,.2f}", peak, str(fig.tail_convs),
            f"{fmt_axes(fig.r_max_final)} vs {fig.reference_label()}",
            "n/a" if fig.dif_sum is None else f"{fig.dif_sum:.2f}")


COLUMNS = ("params", "MACs (M)", "act. peak (batch 1)", "tail convs", "r_max final vs input",
           "dIF sum")


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("model")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    return table


def render_fix(result: FixResult, console: Console) -> None:
    if result.candidates:
        table = _table("candidates (auto)")
        table.add_row("before", *cells(result.before))
        for c in result.candidates:
            mark = "  << chosen" if c.strategy == result.strategy else ""
            if c.figures is None:
                table.add_row(c.strategy, f"n/a: {c.reason}", "", "", "", "", "")
            else:
                table.add_row(c.strategy + mark, *cells(c.figures))
        console.print(table)
    table = _table(f"{result.strategy}: before / after (MACs: 1 multiply-add = 1; FLOPs = 2 x MACs)")
    table.add_row("before", *cells(result.before))
    table.add_row("after", *cells(result.after))
    console.print(table)
    for change in result.rewrite.changes:
        console.print(f"- {change}")
