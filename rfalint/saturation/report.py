"""Text (table + bar chart) and versioned JSON forms of a saturation result."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rfalint.report.text import STATUS_STYLE
from rfalint.saturation.run import SaturationResult

SCHEMA_VERSION = 1  # bump on breaking changes; adding fields is not breaking
BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"
LAYER_SET_TEXT = {"all": "every conv and linear layer", "main-path": "the main path's convs"}


def bar(value: float, width: int = BAR_WIDTH) -> str:
    """``value`` in [0, 1] as a bar of ``width`` cells with eighth-cell resolution."""
    eighths = round(max(0.0, min(1.0, value)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.1%}"


def _span(names: list[str]) -> str:
    if not names:
        return "none"
    return f"{names[0]} .. {names[-1]} ({len(names)} layers)" if len(names) > 1 else names[0]


def render_text(result: SaturationResult, console: Console) -> None:
    res = "x".join(str(s) for s in result.input_shape[1:])
    procs = f", {result.world_size} processes" if result.world_size > 1 else ""
    title = (f"saturation of {result.target} at {res} px, delta {result.delta:g}, "
             f"{result.samples} samples on {result.device}{procs}, layers: "
             f"{LAYER_SET_TEXT[result.layer_set]} ({len(result.layers)})")
    if result.smoke_test:
        console.print("[bold yellow]SMOKE TEST (random data): these numbers say nothing "
                      "about the model[/bold yellow]")
    table = Table(title=escape(title), title_justify="left", header_style="bold")
    for column, justify in (("#", "right"), ("layer", "left"), ("type", "left"),
                            ("C", "right"), ("observations", "right"), ("k", "right"),
                            ("saturation", "right"), ("", "left"), ("RF status", "left"),
                            ("tail", "left")):
        table.add_column(column, justify=justify)
    for i, layer in enumerate(result.layers, 1):
        s = layer.stats
        style = "bold red" if layer.in_saturation_tail else ("dim" if not s.defined else "cyan")
        tails = " ".join(mark for mark, on in (("sat", layer.in_saturation_tail),
                                               ("RF", layer.in_rf_tail)) if on)
        table.add_row(str(i), escape(layer.name), layer.op, str(s.channels),
                      str(s.observations), "-" if s.intrinsic_dim is None else str(s.intrinsic_dim),
                      _pct(s.saturation), Text(bar(s.saturation or 0.0), style=style),
                      Text(layer.rf_status, style=STATUS_STYLE.get(layer.rf_status, "")), tails)
    console.print(table)
    console.print(f"data: {escape(result.data_description)}")
    console.print(f"weights: {escape(result.weights) if result.weights else 'none (untrained)'}")
    defined = sum(layer.stats.defined for layer in result.layers)
    console.print(f"[bold]s_mu[/bold] (mean saturation over {defined} layers, "
                  f"--layers {result.layer_set}): {_pct(result.s_mu)}")
    tail_names = [layer.name for layer in result.layers if layer.in_saturation_tail]
    sat_line = _span(tail_names)
    if result.tail is not None:
        sat_line += f", mean {result.tail.mean:.1%} vs {result.tail.rest_mean:.1%} elsewhere"
    console.print(f"[bold]saturation tail[/bold]: {escape(sat_line)}")
    console.print(f"[bold]RF tail[/bold] (from check): {escape(_span(result.rf_tail))}")
    verdict_style = "green" if result.comparison.verdict == "agree" else "yellow"
    console.print(f"[bold]tails {result.comparison.verdict}[/bold]: "
                  f"[{verdict_style}]{escape(result.comparison.explanation)}[/{verdict_style}]")
    advice = result.advice
    head = "width fits" if advice.fits else (
        f"width: scale by {advice.factor:g}x" if advice.factor is not None else "width")
    console.print(f"[bold]{head}[/bold]: {escape(advice.explanation)}")
    if advice.command:
        console.print(f"  apply it with: [bold]{escape(advice.command)}[/bold]")
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def to_dict(result: SaturationResult) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": result.target,
        "input_shape": list(result.input_shape),
        "delta": result.delta,
        "device": result.device,
        "processes": result.world_size,
        "layer_set": result.layer_set,
        "data": {"kind": result.data_kind, "description": result.data_description,
                 "smoke_test": result.smoke_test, "samples": result.samples},
        "weights": result.weights,
        "layers": [
            {"name": layer.name, "type": layer.op, "channels": layer.stats.channels,
             "observations": layer.stats.observations,
             "intrinsic_dim": layer.stats.intrinsic_dim,
             "saturation": layer.stats.saturation,
             "total_variance": layer.stats.total_variance,
             "rf_status": layer.rf_status, "in_rf_tail": layer.in_rf_tail,
             "in_saturation_tail": layer.in_saturation_tail}
            for layer in result.layers
        ],
        "s_mu": result.s_mu,
        "saturation_tail": None if result.tail is None else {
            "layers": [layer.name for layer in result.layers if layer.in_saturation_tail],
            "mean": result.tail.mean, "rest_mean": result.tail.rest_mean},
        "rf_tail": result.rf_tail,
        "tails": {"verdict": result.comparison.verdict,
                  "explanation": result.comparison.explanation},
        "width": {"fits": result.advice.fits, "factor": result.advice.factor,
                  "explanation": result.advice.explanation, "command": result.advice.command},
        "notes": result.notes,
        "warnings": result.warnings,
    }


def to_json(result: SaturationResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"
