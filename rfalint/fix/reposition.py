"""``fix --strategy reposition``: move the downsampling layers (docs/method.md §6).

The layers stay; the same downsampling layers are placed anew (pools keep their order
among themselves, conv strides theirs): a pool goes into any gap between units, a conv's
stride onto the first spatial conv of any unit (a residual unit then gets a 1x1 strided
projection on its identity shortcut, or its shortcut conv takes the stride). Each placement is priced analytically on the
units' own subgraphs: receptive fields with rfalint's Pareto fronts (so r_min through
skips is exact), feature-map sizes with the window formula, MACs as the captured MACs
of each layer scaled by its new output size. A depth-first search over the placements
(pruned by the cheapest one found) keeps those where no conv of the main path is past
the border (the last one's input r_min does not cover the input), the final r_max
covers the input and the output size is unchanged; the cheapest wins. Only the winner is
rewritten, built, run and re-checked, and its re-check must match the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from rfalint.analysis import Analysis
from rfalint.analysis.border import covers
from rfalint.analysis.cost import GRAPH, measure
from rfalint.analysis.rf import AxisFronts, NodeRF
from rfalint.analysis.plan import NotApplicable
from rfalint.analysis.stages import Layout, NoStages, find_layout, strided, unit_label
from rfalint.fix.rewrite import Rewriter
from rfalint.fix.strategies import Rewrite
from rfalint.graph import Graph, Kind, Transfer, Window
from rfalint.spec import Document


@dataclass(frozen=True)
class Down:
    """One downsampling layer: a pool (placed in a gap) or a conv stride (on a unit)."""

    node: int
    is_pool: bool
    stride: tuple[int, ...]
    origin: int  # gap (pool) or unit (conv) index in the original layout


@dataclass(frozen=True)
class State:
    """The main path after some units: RFs, the RF carried to the next conv, sizes, cost."""

    rf: NodeRF
    carried: NodeRF  # RF of the last main-path conv, carried along the main path
    last_in: NodeRF | None  # carried RF entering the last main-path conv so far
    size: tuple[int, ...]
    macs: int  # MACs of the units so far at their new sizes (plus new projections)
    params: int  # parameters of new projections
    placed: tuple[int, ...]


@dataclass
class Placement:
    positions: tuple[int, ...]  # per Down: gap index (pool) or unit index (conv stride)
    macs: int
    params: int
    r_last_in: tuple[int, ...]  # r_min entering the last conv of the main path
    r_final: tuple[int, ...]  # r_max entering the readout
    convs: list[tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = \
        field(default_factory=list)  # (node, jump, footprint, input size) per main-path conv


def _window_out(size, geometry: Window, stride, ceil: bool) -> tuple[int, ...] | None:
    out = []
    for z, p, f, s in zip(size, geometry.padding, geometry.footprint(), stride):
        span = z + 2 * p - f
        if span < 0:
            return None
        out.append((-(-span // s) if ceil else span // s) + 1)
    return tuple(out)


class _Model:
    """The main path as units and gaps, with everything a placement changes."""

    def __init__(self, model: nn.Module, analysis: Analysis, layout: Layout):
        self.graph = graph = analysis.graph
        self.units = layout.units
        self.main = set(analysis.border.main_path)
        self.ndim = graph.spatial_dims
        cost = measure(model, graph, counter=GRAPH)
        self.macs, self.params, self.total_macs = cost.macs, cost.params_total, cost.macs_total
        self.fixed_macs = self.total_macs - sum(cost.macs[n] for u in self.units for n in u.nodes)
        self.downs: list[Down] = []
        for g in range(len(self.units) + 1):
            for node_id in layout.pools.get(g, []):
                node = graph[node_id]
                if not isinstance(node.geometry, Window):
                    raise NotApplicable(f"reposition does not apply: '{node.name}' "
                                        f"({node.op}) downsamples without a window")
                self.downs.append(Down(node_id, True, node.geometry.stride, g))
            if g < len(self.units):
                main = [n for n in self.units[g].convs if strided(graph[n])]
                if len(main) > 1 or main and graph[main[0]].kind is not Kind.CONV:
                    raise NotApplicable(f"reposition does not apply: '{graph[main[0]].name}' "
                                        "is not the one strided conv of its unit")
                if main:
                    self.downs.append(Down(main[0], False, graph[main[0]].geometry.stride, g))
        self.original = tuple(d.origin for d in self.downs)
        self.receiver = [self._receiver(u) for u in self.units]
        self.normed = [any(isinstance(graph[n].module, nn.modules.batchnorm._BatchNorm)
                           for n in u.nodes) for u in self.units]
        self.final_size = graph[analysis.border.end].spatial_out

    def _receiver(self, unit) -> int:
        """The conv that takes a stride placed on the unit: its first spatial conv."""
        graph = self.graph
        convs = [n for n in unit.convs if graph[n].kind is Kind.CONV]
        spatial = [n for n in convs if max(graph[n].geometry.footprint()) > 1]
        return (spatial or convs)[0]

    def shortcut(self, u: int) -> tuple[list[int], list[int]]:
        """Side-path windows reading the unit's entry, and merges reading it directly."""
        unit, graph = self.units[u], self.graph
        windows, merges = [], []
        for n in unit.nodes:
            node = graph[n]
            if unit.entry not in node.inputs or n in self.main and node.kind is not Kind.MERGE:
                continue
            if node.kind is Kind.MERGE:
                merges.append(n)
            elif isinstance(node.geometry, Window):
                windows.append(n)
        return windows, merges

    def start(self) -> State:
        rf = NodeRF((AxisFronts.start(1),) * self.ndim)
        return State(rf, rf, None, self.graph.resolution, 0, 0, ())

    def pool(self, state: State, down: Down, gap: int) -> State | None:
        node = self.graph[down.node]
        size = _window_out(state.size, node.geometry, down.stride,
                           getattr(node.module, "ceil_mode", False))
        if size is None:
            return None
        transfers = node.transfers(self.ndim)
        return State(state.rf.through(transfers), state.carried.through(transfers),
                     state.last_in, size, state.macs, state.params, (*state.placed, gap))

    def unit(self, u: int, state: State, stride: tuple[int, ...] | None,
             convs: list | None = None) -> State | None:
        """Push the state through unit ``u`` (with ``stride`` placed on it); None when a
        feature map does not fit."""
        graph, unit = self.graph, self.units[u]
        windows, merges = self.shortcut(u) if stride else ([], [])
        ones = (1,) * self.ndim
        rfs, sizes = {unit.entry: state.rf}, {unit.entry: state.size}
        carried, last_in = state.carried, state.last_in
        macs, params = state.macs, state.params
        for n in unit.nodes:
            node = graph[n]
            if node.layout is None:
                macs += self.macs[n]
                continue
            sources = []
            for pos, s in enumerate(node.inputs):
                if pos in node.gates or s not in rfs:
                    continue
                r, z = rfs[s], sizes[s]
                if s == unit.entry and n in merges:  # a new 1x1 strided projection
                    r = r.through(tuple(Transfer(1, st) for st in stride))
                    z = tuple((zi - 1) // st + 1 for zi, st in zip(z, stride))
                    channels = graph[unit.entry].out_shape[1]
                    macs += channels * channels * math.prod(z)
                    params += channels * channels + (2 * channels if self.normed[u] else 0)
                sources.append((r, z))
            if not sources:
                continue
            size = sources[0][1]
            if any(z != size for _, z in sources):
                return None
            merged = sources[0][0] if len(sources) == 1 else NodeRF.union([r for r, _ in sources])
            g = node.geometry
            if isinstance(g, Window) and not g.transposed:
                s = g.stride
                if n == self.receiver[u] or n in windows:
                    s = stride or ones
                elif strided(node):
                    s = ones
                out = _window_out(size, g, s, getattr(node.module, "ceil_mode", False))
                if out is None:
                    return None
                transfers = tuple(Transfer(f, si) for f, si in zip(g.footprint(), s))
            else:
                out, transfers = size, node.transfers(self.ndim)
            rfs[n], sizes[n] = merged.through(transfers), out
            if n in self.main:
                if node.kind is Kind.CONV:
                    if convs is not None:
                        convs.append((n, tuple(int(j) for j in carried.jump),
                                      tuple(g.footprint()), size))
                    last_in, carried = carried, rfs[n]
                else:
                    carried = carried.through(transfers)
            if self.macs[n]:
                macs += self.macs[n] * math.prod(out) // math.prod(node.spatial_out)
        return State(rfs[unit.exit], carried, last_in, sizes[unit.exit], macs, params,
                     (*state.placed, u) if stride else state.placed)

    # ------------------------------------------------------------------ placements

    def valid(self, state: State) -> bool:
        res = self.graph.resolution
        return (len(state.placed) == len(self.downs) and state.size == self.final_size
                and state.last_in is not None and not covers(state.last_in.r_min, res)
                and all(r >= s for r, s in zip(state.rf.r_max, res)))

    def placement(self, state: State, positions: tuple[int, ...], convs: list) -> Placement:
        return Placement(positions, self.fixed_macs + state.macs, self.params + state.params,
                         state.last_in.r_min, state.rf.r_max, convs)

    def evaluate(self, positions: tuple[int, ...]) -> tuple[State | None, list]:
        """The state at the readout for one placement, and its main-path convs."""
        state, convs = self.start(), []
        queue = sorted(range(len(self.downs)),
                       key=lambda k: (positions[k], not self.downs[k].is_pool, k))
        for g in range(len(self.units) + 1):
            while state is not None and queue and self.downs[queue[0]].is_pool \
                    and positions[queue[0]] == g:
                state = self.pool(state, self.downs[queue.pop(0)], g)
            if state is None or g == len(self.units):
                break
            down = None
            if queue and not self.downs[queue[0]].is_pool and positions[queue[0]] == g:
                down = self.downs[queue.pop(0)]
            state = self.unit(g, state, down.stride if down else None, convs)
        return state, convs

    def search(self, cap: int | None) -> Placement | None:
        """The cheapest valid placement, depth first over the gaps.

        Pools keep their order among themselves and conv strides theirs (at most one per
        unit); the two interleave freely. Pruned by the cheapest placement found so far
        and by coverage: every path to a later conv passes each unit's entry, so once the
        entry's r_min covers the input, the last conv will be past the border.
        """
        n, res = len(self.units), self.graph.resolution
        pools = [d for d in self.downs if d.is_pool]
        strides = [d for d in self.downs if not d.is_pool]
        best: list[tuple[State, tuple[int, ...], tuple[int, ...]]] = []

        def bound() -> float:
            limit = self.fixed_macs + best[0][0].macs if best else math.inf
            return min(limit, cap + 1) if cap is not None else limit

        def visit(g: int, i: int, c: int, state: State, at_pools: tuple, at_convs: tuple) -> None:
            chain = [state]
            for k in range(i, len(pools)):
                nxt = self.pool(chain[-1], pools[k], g)
                if nxt is None:
                    break
                chain.append(nxt)
            for k in range(len(chain) - 1, -1, -1):  # most pools first: cheapest first
                here, ii, placed = chain[k], i + k, at_pools + (g,) * k
                if g == n:
                    if ii == len(pools) and c == len(strides) and self.valid(here) \
                            and self.fixed_macs + here.macs < bound():
                        best[:] = [(here, placed, at_convs)]
                    continue
                if covers(here.rf.r_min, res):
                    continue
                options = [strides[c].stride] if c < len(strides) else []
                if len(strides) - c <= n - g - 1:
                    options.append(None)
                for stride in options:
                    nxt = self.unit(g, here, stride)
                    if nxt is None or self.fixed_macs + nxt.macs >= bound():
                        continue
                    if stride is None:
                        visit(g + 1, ii, c, nxt, placed, at_convs)
                    else:
                        visit(g + 1, ii, c + 1, nxt, placed, at_convs + (g,))

        visit(0, 0, 0, self.start(), (), ())
        if not best:
            return None
        at_pools, at_convs = iter(best[0][1]), iter(best[0][2])
        positions = tuple(next(at_pools) if d.is_pool else next(at_convs) for d in self.downs)
        state, convs = self.evaluate(positions)
        return self.placement(state, positions, convs)


# ----------------------------------------------------------------------------- rewrite


def reposition(model: nn.Module, analysis: Analysis, doc: Document,
               max_macs_ratio: float | None = None) -> tuple[Rewrite | None, str]:
    """The cheapest placement of the downsampling layers with no tail and full coverage."""
    try:
        layout = find_layout(analysis)
    except NoStages as exc:
        raise NotApplicable(f"reposition does not apply: {exc}") from None
    space = _Model(model, analysis, layout)
    cap = None if max_macs_ratio is None else int(space.total_macs * max_macs_ratio)
    best = space.search(cap)
    res = "x".join(map(str, analysis.graph.resolution))
    if best is None:
        within = f" within {max_macs_ratio:g} x the MACs" if max_macs_ratio is not None else ""
        raise NotApplicable(f"reposition finds no placement of the {len(space.downs)} "
                            f"downsampling layers{within} with no conv past the border at "
                            f"{res} px and the final RF covering the input")
    if best.positions == space.original:
        return None, (f"the current placement of the downsampling layers is already the "
                      f"cheapest with no tail at {res} px")
    document, fresh, changes = _rewrite(space, doc, best)
    changes += explain(space.graph, best)
    return Rewrite("reposition", document, changes, fresh, (best.macs, best.params)), ""


def explain(graph: Graph, best: Placement) -> list[str]:
    """The chosen layout as effective filter sizes (kernel x jump) per stage."""
    lines = [f"predicted: {best.macs / 1e6:,.2f} M MACs, last conv input r_min "
             f"{_axes(best.r_last_in)}, final r_max {_axes(best.r_final)}"]
    groups: list[list] = []
    for entry in best.convs:
        if groups and groups[-1][0][1] == entry[1]:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    for number, group in enumerate(groups, 1):
        jump, size = group[0][1], group[0][3]
        sizes = sorted({tuple(f) for _, _, f, _ in group})
        effective = ", ".join(f"{_axes(f)} x {_axes(jump)} = "
                              f"{_axes(tuple(fi * ji for fi, ji in zip(f, jump)))}"
                              for f in sizes)
        lines.append(f"stage {number} at {_axes(size)} px (jump {_axes(jump)}): {len(group)} "
                     f"conv{'s' if len(group) > 1 else ''} '{graph[group[0][0]].name}'.."
                     f"'{graph[group[-1][0]].name}', effective filter size {effective}")
    return lines


def _axes(values) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _stride_arg(stride: tuple[int, ...]):
    return stride[0] if len(set(stride)) == 1 else list(stride)


def _rewrite(space: _Model, doc: Document, best: Placement
             ) -> tuple[Document, set[str], list[str]]:
    graph, units = space.graph, space.units
    layers = Rewriter(doc)
    owner = {graph[n].name: u for u, unit in enumerate(units) for n in unit.nodes}
    changes: list[str] = []
    fresh: set[str] = set()
    label = lambda u: unit_label(graph, units[u])  # noqa: E731
    for down, old, new in zip(space.downs, space.original, best.positions):
        if old == new:
            continue
        name = graph[down.node].name
        if down.is_pool:
            where = lambda g: f"before {label(g)}" if g < len(units) else "after the last unit"  # noqa: E731,E501
            geometry = graph[down.node].geometry
            changes.append(f"pool '{name}' ({_axes(geometry.kernel)}/{_axes(down.stride)}) "
                           f"moved from {where(old)} to {where(new)}")
        else:
            changes.append(f"stride {_axes(down.stride)} of '{name}' moved to "
                           f"'{graph[space.receiver[new]].name}' ({label(new)})")
    # pools: out, then back in at their new gaps
    pools = {graph[d.node].name: layers[graph[d.node].name] for d in space.downs if d.is_pool}
    for name in pools:
        layers.bypass(name)
    after_last: str | None = None  # the last pool placed after the last unit
    for down, gap in zip(space.downs, best.positions):
        if not down.is_pool:
            continue
        name = graph[down.node].name
        if gap < len(units):
            mine = [i for i, layer in enumerate(layers.layers) if owner.get(layer.name) == gap]
            at = mine[0]
            inside = {layers.layers[i].name for i in mine}
            external = {s for i in mine for s in layers.layers[i].inputs if s not in inside}
            if len(external) != 1:
                raise NotApplicable(f"reposition cannot place '{name}': unit "
                                    f"'{layers.layers[at].name}' reads several layers")
            [source] = external
        else:
            source = after_last or graph[units[-1].exit].name
            at = layers.names().index(source) + 1
            after_last = name
        pool = pools[name]  # the same layer (module, or call of a module), new input
        pool.inputs = [source]
        for other in layers.layers[at:]:
            other.inputs = [name if s == source else s for s in other.inputs]
        layers.layers.insert(at, pool)
        layers.outputs = [name if s == source else s for s in layers.outputs]
    # conv strides: off where they were, on the receiving conv (and its shortcut)
    stride_on = {pos: d.stride for d, pos in zip(space.downs, best.positions) if not d.is_pool}
    stride_was = {d.origin for d in space.downs if not d.is_pool}
    for u in sorted(stride_was | set(stride_on)):
        unit = units[u]
        for n in unit.nodes:
            if strided(graph[n]) and graph[n].kind is Kind.CONV:
                layers.args(graph[n].name).pop("stride")  # the default: 1
        if u not in stride_on:
            continue
        stride = stride_on[u]
        windows, merges = space.shortcut(u)
        for n in [space.receiver[u], *windows]:
            args = layers.args(graph[n].name)
            args["stride"] = _stride_arg(stride)
            _canonical_order(args)
        for merge in merges:
            fresh |= _projection(layers, graph, unit, merge, stride, space.normed[u])
    return layers.document(), fresh, changes


def _canonical_order(args: dict[str, Any]) -> None:
    """Constructor order (in, out, kernel, stride, padding, ...), as export writes it."""
    order = ("in_channels", "out_channels", "kernel_size", "stride")
    items = sorted(args.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 4)
    args.clear()
    args.update(items)


def _projection(layers: Rewriter, graph: Graph, unit, merge: int, stride, normed: bool
                ) -> set[str]:
    """A 1x1 strided conv (+ batch norm when the unit uses one) on an identity shortcut."""
    node = graph[merge]
    names = [graph[n].name for n in unit.nodes]
    at = layers.names().index(node.name)
    [entry] = [s for s in layers.layers[at].inputs if s not in names]  # moved pools may sit here
    parts = [p.split(".") for p in names]
    common = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    prefix = ".".join(common) + "." if common else f"{node.name}_"
    channels = graph[unit.entry].out_shape[1]
    dims = graph.spatial_dims
    conv = layers.free_name(f"{prefix}shortcut_conv")
    new = [layers.insert(at, conv, f"Conv{dims}d", [entry],
                         {"in_channels": channels, "out_channels": channels, "kernel_size": 1,
                          "stride": _stride_arg(stride), "bias": False})]
    if normed:
        norm = layers.free_name(f"{prefix}shortcut_bn")
        new.append(layers.insert(at + 1, norm, f"BatchNorm{dims}d", [conv],
                                 {"num_features": channels}))
    merged = layers[node.name]
    merged.inputs = [new[-1].name if s == entry else s for s in merged.inputs]
    return {layer.name for layer in new}
