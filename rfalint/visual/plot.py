"""The RF plot (``check --plot``): r_min and r_max per layer of the main path against the
input resolution.

The picture of the papers' figures: one point per conv layer of the layer sequence,
the input size as a horizontal line, the tail shaded and the border layer b_min marked.
The RF plotted is each layer's output RF. Non-square inputs or RFs get one panel per
spatial axis, since the border is decided per axis. matplotlib is an optional extra
(``pip install rfalint[plot]``); only the object API is used, so no global pyplot state
or display backend is touched.
"""

from __future__ import annotations

import io
from pathlib import Path

from rfalint.analysis import Analysis, LayerStatus
from rfalint.errors import UsageError
from rfalint.fileio import write_atomic
from rfalint.graph import fmt_axes

MISSING = "{plot} needs matplotlib: pip install rfalint[plot]"
NAMED_TICKS_UP_TO = 40  # beyond this many layers, tick labels are indices only
LOG_SCALE_FROM = 10  # log y-axis when the largest RF exceeds the input this many times

COLORS = {"r_max": "#1f5fa8", "r_min": "#2e9e4f", "input": "#222222", "tail": "#ef7373",
          "critical": "#ffb74d", "border": "#b71c1c"}


def _canvas():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(MISSING, options=True) from None
    return Figure, FigureCanvasAgg


def check_plot_path(path: Path) -> str:
    """The image format for ``path``'s suffix; fails early, before any model is run."""
    _, canvas = _canvas()
    formats = canvas.get_supported_filetypes()
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in formats:
        raise UsageError(f"{{plot}} {path}: unsupported image type {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join('.' + f for f in sorted(formats))}", options=True)
    if not path.resolve().parent.is_dir():
        raise UsageError(f"{{plot}} {path}: directory {path.resolve().parent} does not exist",
                         options=True)
    return fmt


def _axes_to_draw(analysis: Analysis) -> list[int | None]:
    """[None] when every axis gives the same picture, else one entry per axis."""
    size = analysis.reference
    rfs = [analysis.rfs[layer.node] for layer in analysis.border.sequence]
    symmetric = len(set(size)) == 1 and all(
        len(set(rf.r_min)) == 1 and len(set(rf.r_max)) == 1 for rf in rfs)
    return [None] if symmetric else list(range(len(size)))


def draw_rf(analysis: Analysis, title: str):
    """A matplotlib Figure of the per-layer RF; raises UsageError without matplotlib."""
    Figure, _ = _canvas()
    border, graph = analysis.border, analysis.graph
    seq = border.sequence
    if not seq:
        raise UsageError(f"{title}: no conv layers on the main path, nothing to plot")
    axes_ids = _axes_to_draw(analysis)
    n = len(seq)
    named = n <= NAMED_TICKS_UP_TO
    width = min(max(7.0, 0.32 * n + 3.0), 15.0)
    dense = n > 60
    marker = 2.5 if dense else 6.0
    height = 3.6 * len(axes_ids) + (1.6 if named else 0.6)
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    panels = fig.subplots(len(axes_ids), 1, squeeze=False, sharex=True)[:, 0]
    xs = list(range(1, n + 1))
    tail = set(border.tail)
    for ax, axis in zip(panels, axes_ids):
        a = 0 if axis is None else axis
        size = analysis.reference[a]
        what = "object" if analysis.object_size is not None else "input"
        r_max = [analysis.rfs[layer.node].r_max[a] for layer in seq]
        r_min = [analysis.rfs[layer.node].r_min[a] for layer in seq]
        ax.fill_between(xs, r_min, r_max, color=COLORS["r_max"], alpha=0.08, linewidth=0)
        # r_min dashed with open markers on top, so r_max stays visible where they coincide.
        ax.plot(xs, r_max, "o-", color=COLORS["r_max"], label="r_max (output RF)",
                markersize=marker, linewidth=2.0)
        ax.plot(xs, r_min, "s--", color=COLORS["r_min"], label="r_min (output RF)",
                markersize=marker * 0.7, linewidth=1.4, markerfacecolor="white")
        ax.axhline(size, color=COLORS["input"], linestyle="--", linewidth=1.2,
                   label=f"{what} {size} px")
        critical = [x for x, layer in zip(xs, seq)
                    if border.status[layer.node] is LayerStatus.CRITICAL]
        for i, x in enumerate(critical):
            ax.axvspan(x - 0.5, x + 0.5, color=COLORS["critical"], alpha=0.2, linewidth=0,
                       label=None if i else "critical (r_max > input only)")
        if border.b_min is not None:
            b = border.b_min.index
            tail_end = max((x for x, layer in zip(xs, seq) if layer.node in tail), default=b)
            ax.axvspan(b - 0.5, tail_end + 0.5, color=COLORS["tail"], alpha=0.22, linewidth=0,
                       label="unproductive tail")
            ax.axvline(b, color=COLORS["border"], linewidth=1.8,
                       label=f"border layer b_min: #{b} {graph[border.b_min.node].name}")
        if max(r_max) > LOG_SCALE_FROM * size:
            ax.set_yscale("log")
            ax.set_ylabel("receptive field (px, log scale)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_ylabel("receptive field (px)")
        if axis is not None:
            ax.set_title(f"spatial axis {axis} ({what} {size} px)", fontsize=10, loc="left")
        ax.set_xlim(0.4, n + 0.6)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    last = panels[-1]
    if named:
        last.set_xticks(xs)
        last.set_xticklabels([f"{layer.index} {graph[layer.node].name}" for layer in seq],
                             rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        from matplotlib.ticker import MaxNLocator

        last.xaxis.set_major_locator(MaxNLocator(nbins=25, integer=True))
    last.set_xlabel("conv layer of the main path (execution order)")
    fig.suptitle(f"{title} at {fmt_axes(graph.resolution)} px: receptive field per layer",
                 fontsize=11)
    return fig


def save_rf_plot(analysis: Analysis, title: str, path: Path) -> None:
    """Draw the plot and write it atomically; the format follows the file suffix."""
    fmt = check_plot_path(path)
    buffer = io.BytesIO()
    draw_rf(analysis, title).savefig(buffer, format=fmt)
    write_atomic(path, buffer.getvalue())


def draw_sweep(result):
    """Tail share (params, MACs, activation memory) and coverage against the resolution,
    the productive range shaded; points where the model does not run are marked."""
    Figure, _ = _canvas()
    rows = [row for row in result.rows if row.analysed]
    if not rows:
        raise UsageError(f"{result.target}: the model runs at no resolution of the sweep")
    xs = [row.resolution[0] for row in rows]
    fig = Figure(figsize=(9.0, 6.4), dpi=120, layout="constrained")
    share_ax, cover_ax = fig.subplots(2, 1, sharex=True)
    for attr, label, color in (("tail_params_share", "params", COLORS["r_max"]),
                               ("tail_macs_share", "MACs", COLORS["tail"]),
                               ("tail_memory_share", "activation memory", COLORS["r_min"])):
        share_ax.plot(xs, [100 * getattr(row, attr) for row in rows], "o-", color=color,
                      markersize=3.5, label=f"tail share of {label}")
    share_ax.set_ylabel("tail share (%)")
    share_ax.set_ylim(-2, 102)
    ref = "object" if result.object_size else "input"
    cover_ax.plot(xs, [min(row.coverage) for row in rows], "o-", color=COLORS["input"],
                  markersize=3.5, label=f"final r_max / {ref} (smallest axis)")
    cover_ax.axhline(1.0, color=COLORS["border"], linestyle="--", linewidth=1.0,
                     label="full coverage")
    cover_ax.set_ylabel(f"coverage r_max / {ref}")
    cover_ax.set_yscale("log")
    failing = [row.resolution[0] for row in result.rows if not row.runs]
    for ax in (share_ax, cover_ax):
        for i, (lo, hi) in enumerate(result.productive_ranges()):
            ax.axvspan(lo, hi, color=COLORS["r_min"], alpha=0.15, linewidth=0,
                       label=None if i else "productive range")
        for i, x in enumerate(failing):
            ax.axvline(x, color=COLORS["critical"], linewidth=1.0, alpha=0.7,
                       label=None if i else "does not run")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    if xs[-1] >= 8 * xs[0]:
        cover_ax.set_xscale("log", base=2)
    cover_ax.set_xlabel("input resolution (px)")
    fig.suptitle(f"{result.target}: resolution sweep", fontsize=11)
    return fig


def save_sweep_plot(result, path: Path) -> None:
    fmt = check_plot_path(path)
    buffer = io.BytesIO()
    draw_sweep(result).savefig(buffer, format=fmt)
    write_atomic(path, buffer.getvalue())
