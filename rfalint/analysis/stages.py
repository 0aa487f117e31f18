"""Stages of the main path and their Information Field (docs/method.md §6).

A *stage* is a run of units between downsamplings (a strided conv or pool, stride >= 2)
on the main path. A *unit* is what a stage repeats, found from the graph's structure:

* a residual (or any multi-path) block: the main-path span from the node where a side
  path forks off to the merge that joins it again (overlapping spans are one unit);
* a depthwise-separable / inverted-residual block without a skip: a depthwise conv with
  the 1x1 conv right before it (expansion) and right after it (projection);
* any other conv of the main path on its own.

Each unit also takes the parameter-free per-position nodes that follow it (norm,
activation). The stage's input tensor is the output of its downsampling layer (the
network input for the first stage): ``w0`` is its size per axis, ``c0`` its channels.

Information Field (Wang et al., CIKM'21, eqs. 4-7), per spatial axis: every conv of a
unit on the main path, in order, updates ``IF_w = min(IF_w + footprint - 1, w0)`` and
``IF_c`` (standard conv: c0; depthwise: unchanged; grouped: one group's share);
``IF = prod(IF_w) * IF_c``; the downsampling conv itself yields the stage's input tensor
(IF 1). ``dIF_k = (IF_k - IF_{k-1}) / IF_{k-1} * exp(-alpha IF_{k-1} / V0)`` with
``V0 = prod(w0) * c0``, per unit; the first unit of a stage has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rfalint.analysis import Analysis
from rfalint.errors import ModelError
from rfalint.graph import Graph, Kind, Node, Resample, Window

ALPHA = 3.0


class NoStages(ModelError):
    """The main path has no stages (no downsampling, or it upsamples: a decoder)."""


@dataclass(frozen=True)
class Step:
    """One conv (or stride-1 pool) of a unit's main path, as the IF sees it.

    ``channels``: 'standard' (IF_c = c0), 'depthwise' (IF_c kept) or 'grouped';
    ``reset``: the stage's downsampling conv, whose output is the stage input tensor.
    """

    footprint: tuple[int, ...]
    channels: str = "standard"
    groups: int = 1
    reset: bool = False


@dataclass
class Unit:
    """A unit of a stage: its graph nodes and how it changes the IF."""

    nodes: list[int]  # every node of the unit (main path and side paths), graph order
    entry: int  # the node whose output the unit reads
    exit: int  # the node whose output is the unit's output
    convs: list[int]  # main-path convs, in order
    steps: list[Step]
    kind: str  # 'conv', 'residual', 'separable'
    downsamples: bool  # holds the stage's downsampling conv
    width_in: int
    width_out: int

    @property
    def movable(self) -> bool:
        """Moved or removed by the organizer only if it keeps the width and the size."""
        return not self.downsamples and self.width_in == self.width_out


@dataclass
class Stage:
    index: int  # 1-based
    w0: tuple[int, ...]
    c0: int
    units: list[Unit]
    downsampler: int | None  # node that starts the stage (None: the network input)
    IF: list[int] = field(default_factory=list)  # per unit
    dIF: list[float | None] = field(default_factory=list)  # per unit; None for the first

    @property
    def width(self) -> int:
        """Channels the stage hands on: the output of its last unit."""
        return self.units[-1].width_out


def strided(node: Node) -> bool:
    g = node.geometry
    if isinstance(g, Window):
        return not g.transposed and max(g.stride) > 1
    return isinstance(g, Resample) and all(s < 1 for s in g.scale)


def upsamples(node: Node) -> bool:
    g = node.geometry
    if isinstance(g, Window):
        return g.transposed and max(g.stride) > 1
    return isinstance(g, Resample) and any(s > 1 for s in g.scale)


def _depthwise(node: Node) -> bool:
    g = node.geometry
    cin = node.module.in_channels if hasattr(node.module, "in_channels") else None
    return isinstance(g, Window) and g.groups > 1 and g.groups == cin


def _pointwise_conv(node: Node) -> bool:
    g = node.geometry
    return node.kind is Kind.CONV and isinstance(g, Window) and max(g.footprint()) == 1 \
        and g.groups == 1 and not strided(node)


def _channels(graph: Graph, node_id: int) -> int:
    return graph[node_id].out_shape[1]


# ----------------------------------------------------------------------------- detection


def _residual_spans(graph: Graph, path: list[int]) -> list[tuple[int, int]]:
    """Main-path index spans (fork, merge] of every multi-path merge on the main path."""
    index = {n: i for i, n in enumerate(path)}
    spans = []
    for i, node_id in enumerate(path):
        node = graph[node_id]
        operands = [s for pos, s in enumerate(node.inputs) if pos not in node.gates]
        if node.kind is not Kind.MERGE or len(operands) < 2:
            continue
        others = [s for s in operands if s != path[i - 1]]
        common = set.intersection(*(graph.ancestors(s) for s in others))
        fork = max((index[a] for a in common if a in index and index[a] < i), default=0)
        spans.append((fork, i))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _segments(graph: Graph, path: list[int]) -> list[tuple[int, int, str]]:
    """Units as main-path index spans [first, last] with their kind."""
    spans = [(a + 1, b, "residual") for a, b in _residual_spans(graph, path)]
    covered = {i for a, b, _ in spans for i in range(a, b + 1)}
    convs = [i for i, n in enumerate(path) if graph[n].kind is Kind.CONV and i not in covered]
    taken: set[int] = set()
    units = list(spans)

    def only_pointwise(a: int, b: int) -> bool:
        return all(graph[path[k]].kind is Kind.POINTWISE for k in range(a + 1, b))

    for pos, i in enumerate(convs):
        if i in taken or not _depthwise(graph[path[i]]):
            continue
        first = last = i
        before = convs[pos - 1] if pos else None
        if before is not None and before not in taken and _pointwise_conv(graph[path[before]]) \
                and only_pointwise(before, i):
            first = before
        after = convs[pos + 1] if pos + 1 < len(convs) else None
        if after is not None and _pointwise_conv(graph[path[after]]) and only_pointwise(i, after):
            last = after
        taken.update(c for c in convs if first <= c <= last)
        units.append((first, last, "separable"))
    units += [(i, i, "conv") for i in convs if i not in taken]
    units.sort()
    out = []
    for k, (first, last, kind) in enumerate(units):
        stop = units[k + 1][0] if k + 1 < len(units) else len(path)
        while last + 1 < stop and graph[path[last + 1]].kind is Kind.POINTWISE:
            last += 1
        out.append((first, last, kind))
    return out


def _steps(graph: Graph, convs: list[int]) -> list[Step]:
    steps = []
    for node_id in convs:
        node = graph[node_id]
        g = node.geometry
        footprint = g.footprint() if isinstance(g, Window) else (1,) * graph.spatial_dims
        if strided(node):
            steps.append(Step(footprint, reset=True))
        elif node.kind is Kind.POOL or _depthwise(node):
            steps.append(Step(footprint, "depthwise"))
        elif isinstance(g, Window) and g.groups > 1:
            steps.append(Step(footprint, "grouped", g.groups))
        else:
            steps.append(Step(footprint))
    return steps


@dataclass
class Layout:
    """Every unit of the main path, in order, and the downsampling layers between them.

    ``pools[g]``: the strided layers (pools) that sit before unit ``g`` (``g == len(units)``:
    after the last unit). In nets built of blocks, the plain convs before the first block
    (``units[:stem]``) are the stem and those after the last block (``units[final:]``) the
    final convs: they belong to no stage.
    """

    units: list[Unit]
    pools: dict[int, list[int]]
    stem: int
    final: int


def find_layout(analysis: Analysis) -> Layout:
    """Units and downsampling layers of the main path; raises :class:`NoStages`."""
    graph, border = analysis.graph, analysis.border
    path = border.main_path
    up = next((graph[n] for n in path if upsamples(graph[n])), None)
    if up is not None:
        raise NoStages(f"the main path upsamples at '{up.name}' ({up.op}): a decoder has no "
                       "stages of one resolution each")
    if not any(strided(graph[n]) for n in path):
        raise NoStages("the main path has no downsampling (no strided conv or pool), so it "
                       "has no stages")
    seg_at = {first: (last, kind) for first, last, kind in _segments(graph, path)}
    units: list[Unit] = []
    pools: dict[int, list[int]] = {}
    i = 0
    while i < len(path):
        if i not in seg_at:
            if strided(graph[path[i]]):
                pools.setdefault(len(units), []).append(path[i])
            i += 1
            continue
        last, kind = seg_at[i]
        main = path[i:last + 1]
        entry = path[i - 1]
        nodes = sorted(graph.ancestors(path[last]) - graph.ancestors(entry))
        convs = [n for n in main if graph[n].kind is Kind.CONV or (
            graph[n].kind is Kind.POOL and max(graph[n].geometry.footprint()) > 1)]
        down = any(strided(graph[n]) for n in main)
        units.append(Unit(nodes, entry, path[last], convs, _steps(graph, convs), kind, down,
                          _channels(graph, entry), _channels(graph, path[last])))
        i = last + 1
    blocks = [k for k, u in enumerate(units) if u.kind != "conv"]
    stem, final = (blocks[0], blocks[-1] + 1) if blocks else (0, len(units))
    return Layout(units, pools, stem, final)


def find_stages(analysis: Analysis, layout: Layout | None = None) -> list[Stage]:
    """The stages of the main path with their units and IF; raises :class:`NoStages`."""
    graph = analysis.graph
    layout = layout or find_layout(analysis)
    stages: list[Stage] = []
    for k in range(layout.stem, layout.final):
        unit = layout.units[k]
        if not stages or unit.downsamples or k in layout.pools:
            down = next((n for n in unit.convs if strided(graph[n])), None) \
                if unit.downsamples else None
            source = down if down is not None else unit.entry
            starter = down if down is not None else (layout.pools.get(k) or [None])[-1]
            stages.append(Stage(len(stages) + 1, graph[source].spatial_out,
                                _channels(graph, source), [], starter))
        stages[-1].units.append(unit)
    if len(stages) < 2:
        raise NoStages("the blocks of the main path all run at one resolution (one stage), "
                       "so there is nothing to balance between stages")
    for stage in stages:
        stage.IF, stage.dIF = information_field(stage.w0, stage.c0,
                                                [u.steps for u in stage.units])
    return stages


def unit_label(graph: Graph, unit: Unit) -> str:
    """'conv 'features.0'', 'residual block 'layer1.0.conv1'': named by its first conv."""
    first = graph[unit.convs[0]].name if unit.convs else graph[unit.exit].name
    kinds = {"conv": "conv", "residual": "residual block", "separable": "separable block"}
    return f"{kinds[unit.kind]} '{first}'"


# ----------------------------------------------------------------------------- IF


def _advance(w: list[int], c: int, step: Step, w0: tuple[int, ...], c0: int) -> tuple[list[int], int]:
    if step.reset:
        return [1] * len(w0), 1
    w = [min(wi + f - 1, limit) for wi, f, limit in zip(w, step.footprint, w0)]
    if step.channels == "standard":
        c = c0
    elif step.channels == "grouped":
        c = min(c0, max(c, -(-c0 // step.groups)))
    return w, c


def information_field(w0: tuple[int, ...], c0: int, units: list[list[Step]],
                      alpha: float = ALPHA) -> tuple[list[int], list[float | None]]:
    """IF after each unit and dIF of each unit (None for the first) in one stage."""
    w, c = [1] * len(w0), 1
    volume = math.prod(w0) * c0
    ifs: list[int] = []
    gains: list[float | None] = []
    for k, steps in enumerate(units):
        for step in steps:
            w, c = _advance(w, c, step, w0, c0)
        value = math.prod(w) * c
        if k == 0:
            gains.append(None)
        else:
            before = ifs[-1]
            gains.append((value - before) / before * math.exp(-alpha * before / volume))
        ifs.append(value)
    return ifs, gains


def dif_sum(stages: list[Stage]) -> float:
    """Sum of every unit's dIF: the organizer's objective, for trade-off tables."""
    return sum(g for s in stages for g in s.dIF if g is not None)


# ----------------------------------------------------------------------------- organizer


@dataclass
class Move:
    unit: int  # index into the flat list of the original units
    source: int  # 1-based stage numbers
    target: int | None  # None: removed
    dif_source: float  # dIF of the unit as the last of its source stage
    dif_target: float | None  # dIF it gets as the last unit of the target stage


@dataclass
class Plan:
    """The organizer's result: which original units each stage holds, in order."""

    before: list[list[int]]
    after: list[list[int]]
    moves: list[Move]

    @property
    def counts_before(self) -> list[int]:
        return [len(s) for s in self.before]

    @property
    def counts_after(self) -> list[int]:
        return [len(s) for s in self.after]


@dataclass(frozen=True)
class LayoutStage:
    """What the organizer needs of a stage: its input tensor and its units' IF steps."""

    w0: tuple[int, ...]
    c0: int


def organize(layout: list[LayoutStage], units: list[list[Step]], members: list[list[int]],
             movable: list[bool], theta: float = 0.0, alpha: float = ALPHA) -> Plan:
    """The stage-level organizer of Wang et al. §4.1 (docs/method.md §6).

    Each round: the source is the stage whose last unit has the smallest dIF (among
    stages with two or more units whose last unit is movable; ties: the later stage);
    the target is the other stage where that unit, appended, would gain the largest dIF
    (ties: the earlier stage). Move it if that gain beats the source's and exceeds theta;
    remove it if both are <= theta; otherwise stop.
    """
    stages = [list(m) for m in members]
    moves: list[Move] = []

    def gain(s: int, unit_ids: list[int]) -> float:
        _, gains = information_field(layout[s].w0, layout[s].c0, [units[u] for u in unit_ids],
                                     alpha)
        return gains[-1]

    seen = {tuple(map(tuple, stages))}
    while True:
        sources = [(gain(s, ids), s) for s, ids in enumerate(stages)
                   if len(ids) >= 2 and movable[ids[-1]]]
        if not sources:
            break
        low = min(g for g, _ in sources)
        src = max(s for g, s in sources if g == low)
        unit = stages[src][-1]
        targets = [(gain(t, [*ids, unit]), t) for t, ids in enumerate(stages) if t != src]
        if not targets:
            break
        high = max(g for g, _ in targets)
        dst = min(t for g, t in targets if g == high)
        if high > low and high > theta:
            stages[src].pop()
            stages[dst].append(unit)
            moves.append(Move(unit, src + 1, dst + 1, low, high))
        elif high <= theta and low <= theta:
            stages[src].pop()
            moves.append(Move(unit, src + 1, None, low, None))
        else:
            break
        state = tuple(map(tuple, stages))
        if state in seen:  # a cycle can only come from exact ties; stop where it closes
            break
        seen.add(state)
    return Plan([list(m) for m in members], stages, moves)


def plan_stages(stages: list[Stage], theta: float = 0.0) -> Plan:
    """Run the organizer on detected stages; unit ids index the flat unit list."""
    flat = [u for s in stages for u in s.units]
    members, k = [], 0
    for s in stages:
        members.append(list(range(k, k + len(s.units))))
        k += len(s.units)
    layout = [LayoutStage(s.w0, s.c0) for s in stages]
    return organize(layout, [u.steps for u in flat], members, [u.movable for u in flat], theta)
