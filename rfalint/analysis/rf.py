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
exact for stride-1 layers after upsampling (U-Net decoders); a *strided* window right
after upsampling only samples some phases, and there the worst phase is an upper bound
(nearest x2 then a 2/2 pool reads one source, reported as two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from rfalint.graph import Graph, Transfer

State = tuple[Fraction, Fraction, Fraction, Fraction]  # (base, extra, jump, grid)


def _r(state: State) -> Fraction:
    base, extra, _, grid = state
    return base + math.ceil(extra / grid) * grid


def _prune(states: set[State], largest: bool) -> tuple[State, ...]:
    """Keep the Pareto front: for max, drop a state whose r and j are both no larger than
    another's with the same grid and the same phase of ``extra`` (for min, no smaller)."""
    sign = 1 if largest else -1
    groups: dict[tuple[Fraction, Fraction], list[State]] = {}
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
    j *= t.stride
    if (j / grid).denominator == 1:  # units sit on distinct sources again: a plain grid
        return base + math.ceil(extra / grid) * grid, Fraction(0), j, j
    return base, extra, j, grid


def _apply(states: tuple[State, ...], t: Transfer) -> set[State]:
    return {_step(state, t) for state in states}


@dataclass(frozen=True)
class AxisFronts:
    """Pareto fronts of one node on one axis."""

    upper: tuple[State, ...]  # front for r_max
    lower: tuple[State, ...]  # front for r_min

    @property
    def r_max(self) -> Fraction:
        return max(_r(s) for s in self.upper)

    @property
    def r_min(self) -> Fraction:
        return min(_r(s) for s in self.lower)

    @property
    def jump(self) -> Fraction:
        return max(s[2] for s in self.upper)

    def through(self, t: Transfer) -> "AxisFronts":
        return AxisFronts(_prune(_apply(self.upper, t), True), _prune(_apply(self.lower, t), False))

    @staticmethod
    def union(fronts: list["AxisFronts"]) -> "AxisFronts":
        upper = set().union(*(f.upper for f in fronts))
        lower = set().union(*(f.lower for f in fronts))
        return AxisFronts(_prune(upper, True), _prune(lower, False))


_ONE = (Fraction(1), Fraction(0), Fraction(1), Fraction(1))
START = AxisFronts((_ONE,), (_ONE,))


@dataclass(frozen=True)
class NodeRF:
    """RF of a node's output, per spatial axis. ``None`` on nodes without spatial axes."""

    axes: tuple[AxisFronts, ...]

    @property
    def r_max(self) -> tuple[int, ...]:
        return tuple(int(a.r_max) for a in self.axes)

    @property
    def r_min(self) -> tuple[int, ...]:
        return tuple(int(a.r_min) for a in self.axes)

    @property
    def jump(self) -> tuple[Fraction, ...]:
        return tuple(a.jump for a in self.axes)

    def through(self, transfers: tuple[Transfer, ...]) -> "NodeRF":
        return NodeRF(tuple(a.through(t) for a, t in zip(self.axes, transfers)))

    @staticmethod
    def union(rfs: list["NodeRF"]) -> "NodeRF":
        return NodeRF(tuple(AxisFronts.union(list(axis)) for axis in zip(*(r.axes for r in rfs))))


def receptive_fields(graph: Graph) -> list[NodeRF | None]:
    """RF of every node's output, indexed by node id."""
    ndim = graph.spatial_dims
    rfs: list[NodeRF | None] = []
    for node in graph:
        if node.layout is None:
            rfs.append(None)
            continue
        if not node.inputs:
            rfs.append(NodeRF((START,) * ndim))
            continue
        sources = [rfs[src] for pos, src in enumerate(node.inputs) if pos not in node.gates]
        sources = [s for s in sources if s is not None]
        if not sources:
            rfs.append(None)
            continue
        merged = sources[0] if len(sources) == 1 else NodeRF.union(sources)
        rfs.append(merged.through(node.transfers(ndim)))
    return rfs
