"""Receptive fields of every node: min and max over all input paths, per spatial axis.

Each node keeps, per axis, two small Pareto sets of states: one for the largest and one
for the smallest RF over paths. A layer maps ``(r, j)`` to ``(r + (span - 1) * j,
j * stride)``, which is monotone in both, so dominated states can be dropped without
losing the true min/max later. A merge is the union of its inputs' sets. Cost is linear
in the number of nodes; paths are never enumerated (DenseNet has exponentially many).

Upsampling is handled exactly with a ``grid``. After nearest x2 the jump is j/2, but
neighbouring units either share a source or sit a whole source step apart. So a state is
``(base, extra, j, grid)``: ``base`` is the RF of one source unit on the grid of spacing
``grid`` (the jump before upsampling) and ``extra`` the span, in input pixels, that the
windows since then have added at the fine jump. ``extra`` can straddle up to
``ceil(extra / grid)`` source steps, so ``r = base + ceil(extra / grid) * grid``; when a
stride brings the units back onto distinct sources, ``extra`` is folded into ``base``.
Without upsampling ``grid == j`` and this is the textbook formula. RFs are the worst
case over unit positions, which is what the gradient-support oracle measures. This is
exact for stride-1 layers after nearest/bilinear upsampling and k = s transposed convs
(U-Net decoders). Where the phase matters the worst phase is an upper bound: a *strided*
window right after upsampling samples fixed phases (nearest x2 then a 2/2 pool reads one
source, reported as two), and so does resampling after a transposed conv whose kernel
is not a multiple of its stride.

Where each unit's field lies (effective padding, exact regions over all paths) is
:mod:`rfalint.analysis.region`; r_max also covers the span of the union of offset paths
that it computes (docs/method.md §4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction

from rfalint.analysis import region as regions
from rfalint.analysis.region import NodeRegion
from rfalint.graph import IDENTITY, Graph, Transfer

State = tuple[int, int, int, int]  # (base, extra, jump, grid), in 1/scale pixels


def _r(state: State) -> int:
    base, extra, _, grid = state
    return base + -(-extra // grid) * grid


def _prune(states: set[State], largest: bool) -> tuple[State, ...]:
    """Keep the Pareto front: for max, drop a state whose r and j are both no larger than
    another's with the same grid and the same phase of ``extra`` (for min, no smaller)."""
    sign = 1 if largest else -1
    groups: dict[tuple[int, int], list[State]] = {}
    for state in states:
        groups.setdefault((state[3], state[1] % state[3]), []).append(state)
    front: list[State] = []
    for group in groups.values():
        best_j = None
        for state in sorted(group, key=lambda s: (sign * _r(s), sign * s[2]), reverse=True):
            if best_j is None or sign * state[2] > sign * best_j:
                front.append(state)
                best_j = state[2]
    return tuple(sorted(front))


def _step(state: State, t: Transfer) -> State:
    base, extra, j, grid = state
    extra += (t.span - 1) * j
    j, rest = divmod(j * t.stride.numerator, t.stride.denominator)
    assert rest == 0, "the scale covers every upsampling factor"
    if j % grid == 0:  # units sit on distinct sources again: a plain grid
        return base + -(-extra // grid) * grid, 0, j, j
    return base, extra, j, grid


@dataclass(frozen=True)
class AxisFronts:
    """Pareto fronts of one node on one axis, in units of 1/``scale`` pixels.

    ``scale`` is the product of every upsampling factor in the graph, so that jumps
    divided by upsampling stay integers (exact, and much faster than Fractions).
    """

    upper: tuple[State, ...]  # front for r_max
    lower: tuple[State, ...]  # front for r_min
    scale: int = 1

    @classmethod
    def start(cls, scale: int) -> "AxisFronts":
        one = (scale, 0, scale, scale)
        return cls((one,), (one,), scale)

    @property
    def r_max(self) -> int:
        return max(_r(s) for s in self.upper) // self.scale

    @property
    def r_min(self) -> int:
        return min(_r(s) for s in self.lower) // self.scale

    @property
    def jump(self) -> Fraction:
        return Fraction(max(s[2] for s in self.upper), self.scale)

    def through(self, t: Transfer) -> "AxisFronts":
        if t == IDENTITY:
            return self
        upper = _prune({_step(s, t) for s in self.upper}, True)
        lower = _prune({_step(s, t) for s in self.lower}, False)
        return AxisFronts(upper, lower, self.scale)

    @staticmethod
    def union(fronts: list["AxisFronts"]) -> "AxisFronts":
        upper = set().union(*(f.upper for f in fronts))
        lower = set().union(*(f.lower for f in fronts))
        return AxisFronts(_prune(upper, True), _prune(lower, False), fronts[0].scale)


@dataclass(frozen=True)
class NodeRF:
    """RF of a node's output, per spatial axis. ``None`` on nodes without spatial axes.

    ``region`` says where each unit's field lies (:mod:`rfalint.analysis.region`,
    docs/method.md §4), ``None`` where offsets are unknown. ``union_extent`` is the span
    of the union of all paths' fields, per axis: it exceeds the longest path's RF when
    merged paths are offset against each other (YOLO's Focus stem), and r_max reports it.
    """

    axes: tuple[AxisFronts, ...]
    region: NodeRegion | None = None
    union_extent: tuple[int, ...] | None = None

    @cached_property
    def r_max(self) -> tuple[int, ...]:
        if self.union_extent is None:
            return tuple(a.r_max for a in self.axes)
        return tuple(max(a.r_max, e) for a, e in zip(self.axes, self.union_extent))

    @cached_property
    def r_min(self) -> tuple[int, ...]:
        return tuple(a.r_min for a in self.axes)

    @property
    def jump(self) -> tuple[Fraction, ...]:
        return tuple(a.jump for a in self.axes)

    @property
    def eff_padding(self) -> tuple[int, ...] | None:
        """P per axis: unit 0 sees input pixels from ``-P`` on; None when unknown."""
        if self.region is None:
            return None
        return tuple(a.eff_padding for a in self.region)

    def region_of(self, unit: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
        """First and last input pixel (inclusive, before clipping) per axis that output
        unit ``unit`` reads over all paths; None when offsets are unknown."""
        if self.region is None:
            return None
        return tuple(a.at(u) for a, u in zip(self.region, unit))

    def through(self, transfers: tuple[Transfer, ...]) -> "NodeRF":
        """The path RF carried through one more op (the border's main path): sizes only."""
        return NodeRF(tuple(a.through(t) for a, t in zip(self.axes, transfers)))

    @staticmethod
    def union(rfs: list["NodeRF"]) -> "NodeRF":
        return NodeRF(tuple(AxisFronts.union(list(axis)) for axis in zip(*(r.axes for r in rfs))))


def receptive_fields(graph: Graph) -> list[NodeRF | None]:
    """RF of every node's output, indexed by node id."""
    ndim = graph.spatial_dims
    scale = math.prod(t.stride.denominator for node in graph for t in node.transfers(ndim))
    start = NodeRF((AxisFronts.start(scale),) * ndim, (regions.START,) * ndim, (1,) * ndim)
    rfs: list[NodeRF | None] = []
    for node in graph:
        if node.layout is None:
            rfs.append(None)
            continue
        if not node.inputs:
            rfs.append(start)
            continue
        sources = [rfs[src] for pos, src in enumerate(node.inputs) if pos not in node.gates]
        sources = [s for s in sources if s is not None]
        if not sources:
            rfs.append(None)
            continue
        transfers = node.transfers(ndim)
        fronts = sources[0].axes if len(sources) == 1 else tuple(
            AxisFronts.union(list(axis)) for axis in zip(*(s.axes for s in sources)))
        if not all(t is IDENTITY for t in transfers):
            fronts = tuple(a.through(t) for a, t in zip(fronts, transfers))
        region = regions.through(regions.union([s.region for s in sources]),
                                 regions.node_maps(node, ndim))
        if region is None or region is sources[0].region:
            extent = None if region is None else sources[0].union_extent
        else:
            sizes = node.spatial_out
            extent = tuple(axis.extent(size) for axis, size in zip(region, sizes))
        rfs.append(NodeRF(fronts, region, extent))
    return rfs
