"""``rfalint sweep``: the border analysis over a range of input resolutions (docs/method.md §5).

At which resolutions does an architecture make sense? For every resolution the sweep gives
what ``check`` would say (b_min, the tail and its share of params, MACs and activation
memory, critical and degenerate-kernel counts, final coverage) and whether the model runs
at all; the *productive range* is where it runs, has no tail and covers the reference.

Speed: :class:`rfalint.capture.Captures` captures each distinct shape behaviour once, on
meta tensors (shapes only, no compute), and makes the other resolutions by replaying that
capture's recording of the model's calls on tensors of their size. Every size, flag and
failure the model's Python saw must come out the same, which proves the Python would have
run the same way; where anything differs (a forward that reads ``x.shape`` or pads to a
multiple) the resolution is captured and recorded in turn.

Receptive fields depend only on the graph's geometry, not on the sizes of its maps, so RF
propagation is done once per distinct geometry and reused: the geometry signature (per
node: kind, inputs, gates and per-axis transfers and index maps) is compared, and it
differs only where a window or a pad depends on the size (adaptive pooling to a size > 1,
``interpolate(size=...)``, padding to a multiple), which is then recomputed.
The cost is priced with rfalint's graph counter (no forward pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn as nn

from rfalint.analysis import Analysis, ObjectSize, LayerStatus, analyze_graph
from rfalint.analysis.cost import GRAPH, measure
from rfalint.analysis.memory import activation_memory, model_dtype
from rfalint.analysis.region import node_maps
from rfalint.analysis.rf import NodeRF, receptive_fields
from rfalint.capture import Captures
from rfalint.errors import CollapseError, ModelError, UsageError
from rfalint.graph import Graph, Kind, fmt_axes
from rfalint.ops import Registry
from rfalint.rules import run_rules

MAX_POINTS = 1000


def _positive(text: str, whole: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{{res}} expects START:STOP[:STEP|:xFACTOR] or N,N,... with whole "
                         f"numbers, got {whole!r}", options=True) from None
    if value <= 0:
        raise UsageError(f"{{res}} sizes must be positive, got {whole!r}", options=True)
    return value


def parse_resolutions(text: str) -> list[int]:
    """``16:1024`` (step = start), ``16:1024:16``, ``16:1024:x2`` or ``32,64,128,224``;
    sizes apply to every spatial axis. Ends are inclusive when a step lands on them."""
    text = text.strip()
    if not text:
        raise UsageError("{res} is empty: give START:STOP[:STEP|:xFACTOR] or N,N,...", options=True)
    if ":" not in text:
        sizes = [_positive(part.strip(), text) for part in text.split(",")]
    else:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"{{res}} range must be START:STOP[:STEP|:xFACTOR], got {text!r}",
                             options=True)
        start, stop = _positive(parts[0], text), _positive(parts[1], text)
        if start > stop:
            raise UsageError(f"{{res}} range {text!r} runs backwards ({start} > {stop})",
                             options=True)
        step = parts[2].strip().lower() if len(parts) == 3 else str(start)
        if step.startswith("x"):
            try:
                factor = float(step[1:])
            except ValueError:
                factor = 0.0
            if not factor > 1:
                raise UsageError(f"{{res}} factor must be a number > 1, got {text!r}", options=True)
            count = math.floor(math.log(stop / start, factor) + 1e-9) + 1
            if count > MAX_POINTS:
                raise UsageError(f"{{res}} {text!r} has {count} points; at most {MAX_POINTS}",
                                 options=True)
            sizes = [round(start * factor ** i) for i in range(count)]
        else:
            increment = _positive(step, text)
            count = (stop - start) // increment + 1
            if count > MAX_POINTS:
                raise UsageError(f"{{res}} {text!r} has {count} points; at most {MAX_POINTS}",
                                 options=True)
            sizes = list(range(start, stop + 1, increment))
    sizes = sorted(set(sizes))
    if len(sizes) > MAX_POINTS:
        raise UsageError(f"{{res}} {text!r} has {len(sizes)} points; at most {MAX_POINTS}",
                         options=True)
    return sizes


@dataclass
class SweepRow:
    """What ``check`` says at one resolution, in numbers."""

    resolution: tuple[int, ...]
    runs: bool
    error: str | None = None  # why it does not run (a collapse, a failing head or body)
    analysed: bool = False  # False when the forward failed before the readout: no analysis
    collapsed: bool = False  # that failure is a feature map too small for a window
    # False when an op on the way to a readout is not understood (RFA201): RFs are lower
    # bounds, so b_min can only come earlier and the tail and coverage only grow
    complete: bool = True
    b_min: str | None = None
    b_min_index: int | None = None
    tail_convs: int = 0
    tail_params_share: float = 0.0
    tail_macs_share: float = 0.0
    tail_memory_share: float = 0.0
    critical: int = 0
    degenerate: int = 0  # RFA103 findings
    r_max_final: tuple[int, ...] | None = None
    reference: tuple[int, ...] | None = None
    activation_peak: int | None = None
    outputs: list[dict] = field(default_factory=list)  # per output: name, b_min, tail convs

    @property
    def coverage(self) -> tuple[float, ...] | None:
        """Final r_max over the reference per axis (>= 1: every unit can see it whole)."""
        if self.r_max_final is None:
            return None
        return tuple(r / s for r, s in zip(self.r_max_final, self.reference))

    @property
    def productive(self) -> bool:
        """Runs, no tail and full coverage; never claimed from an incomplete analysis."""
        return self.runs and self.complete and self.tail_convs == 0 \
            and min(self.coverage or (0,)) >= 1


@dataclass
class Sweep:
    target: str
    rows: list[SweepRow]
    object_size: str | None
    captures: int  # forward passes of the model (on meta tensors where possible)
    replays: int  # resolutions made by replaying a capture's recording instead
    rf_computations: int  # RF propagations; the rest reused a geometry seen before

    def productive_ranges(self) -> list[tuple[int, int]]:
        """Runs of consecutive sweep points that are productive, as (first, last) sizes."""
        ranges: list[tuple[int, int]] = []
        previous = False
        for row in self.rows:
            size = row.resolution[0]
            if row.productive:
                if previous:
                    ranges[-1] = (ranges[-1][0], size)
                else:
                    ranges.append((size, size))
            previous = row.productive
        return ranges


def _signature(graph: Graph) -> tuple:
    """Everything RF propagation reads: equal signatures give equal RFs (also where the
    units look: pads and crops that depend on the size change the index maps)."""
    ndim = graph.spatial_dims
    return tuple((n.kind, tuple(n.inputs), n.gates, n.layout is None, n.transfers(ndim),
                  node_maps(n, ndim)) for n in graph)


def _row(model: nn.Module, analysis: Analysis) -> SweepRow:
    graph, border = analysis.graph, analysis.border
    cost = measure(model, graph, GRAPH)
    memory = activation_memory(graph, model_dtype(model))
    share = cost.share(border.tail)
    degenerate = sum(1 for f in run_rules(analysis, select=("RFA103",)))
    outputs = [{"output": v.name, "node": graph[v.node].name,
                "b_min": analysis.layer_name(v.border.b_min.node) if v.border.b_min else None,
                "b_min_index": v.border.b_min.index if v.border.b_min else None,
                "tail_conv_layers": sum(1 for t in v.border.tail if graph[t].kind is Kind.CONV),
                "rf_max_final": list(v.final(analysis.rfs).r_max)}
               for v in analysis.outputs]
    return SweepRow(
        resolution=graph.resolution,
        runs=not graph.head_error,
        error=f"head fails: {graph.head_error}" if graph.head_error else None,
        analysed=True,
        complete=analysis.complete,
        b_min=analysis.layer_name(border.b_min.node) if border.b_min else None,
        b_min_index=border.b_min.index if border.b_min else None,
        tail_convs=sum(1 for t in border.tail if graph[t].kind is Kind.CONV),
        tail_params_share=share.params_fraction,
        tail_macs_share=share.macs_fraction,
        tail_memory_share=memory.share(border.tail)[1],
        critical=sum(1 for layer in border.sequence
                     if border.status[layer.node] is LayerStatus.CRITICAL),
        degenerate=degenerate,
        r_max_final=analysis.rf_final.r_max,
        reference=analysis.reference,
        activation_peak=memory.peak,
        outputs=outputs,
    )


def sweep(model: nn.Module, channels: int, spatial_dims: int, sizes: list[int],
          name: str = "model", object_size: dict[str | None, ObjectSize] | None = None,
          registry: Registry | None = None) -> Sweep:
    """Check ``model`` at every size of ``sizes`` (repeated over ``spatial_dims`` axes),
    with the ops and leaf modules of ``registry`` (:mod:`rfalint.ops`; default: built-in).

    A resolution at which the forward fails (a feature map collapses, an FPN's upsampled
    map does not match its lateral) is a row with ``runs=False`` and the error; when the
    model runs at no size for another reason than a collapse, that error is raised, as are
    bad object sizes.
    """
    if object_size:
        smallest = min(sizes)
        for size in object_size.values():
            if max(size.high) > smallest:
                raise UsageError(f"{{object_size}} {size.label()} is larger than the smallest "
                                 f"resolution of the sweep, {smallest} px", options=True)
    rows: list[SweepRow] = []
    known: dict[tuple, list[NodeRF | None]] = {}
    graphs = Captures(model, name, registry)
    computed = 0
    failures: list[ModelError] = []
    for size in sizes:
        shape = (channels, *(size,) * spatial_dims)
        try:
            graph = graphs.at(shape)
        except ModelError as exc:
            failures.append(exc)
            rows.append(SweepRow(shape[1:], runs=False, error=str(exc),
                                 collapsed=isinstance(exc, CollapseError)))
            continue
        signature = _signature(graph)
        rfs = known.get(signature)
        if rfs is None:
            rfs = known[signature] = receptive_fields(graph)
            computed += 1
        rows.append(_row(model, analyze_graph(graph, object_size, rfs)))
    if failures and not any(row.analysed for row in rows):
        broken = [e for e in failures if not isinstance(e, CollapseError)]
        if broken:
            raise broken[0]  # the model runs at no size: an error, not a table
    label = None
    if object_size:
        label = ",".join(f"{k}={v.label()}" if k else v.label() for k, v in object_size.items())
    return Sweep(name, rows, label, graphs.captures, graphs.replays, computed)


def describe_ranges(ranges: list[tuple[int, int]]) -> str:
    if not ranges:
        return "none of the points"
    return ", ".join(f"{a}..{b} px" if a != b else f"{a} px" for a, b in ranges)


def coverage_text(row: SweepRow) -> str:
    if row.coverage is None:
        return ""
    return fmt_axes(f"{c:.2f}" for c in row.coverage)
