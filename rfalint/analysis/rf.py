"""Receptive fields of every node: min and max over all input paths, per spatial axis.

Each node keeps, per axis, two small Pareto sets of ``(r, jump, grid)`` states: one for
the largest and one for the smallest RF over paths. A layer maps ``(r, j)`` to
``(r + (span - 1) * j, j * stride)``, which is monotone in both, so dominated states can
be dropped without losing the true min/max later. A merge is the union of its inputs'
sets. Cost is linear in the number of nodes; paths are never enumerated (DenseNet has
exponentially many).

``grid`` handles upsampling exactly. After nearest x2 the jump is j/2, but neighbouring
units either share a source or sit a whole source jump apart: a window of ``span`` units
reads up to ``ceil((span - 1) * j / grid)`` source steps of ``grid`` pixels, where
``grid`` is the spacing of the distinct sources (the jump before upsampling). Without
upsampling ``grid == j`` and this is the textbook formula. RFs are the worst case over
unit positions, which is what the gradient-support oracle measures. This is exact for
stride-1 layers after upsampling (U-Net decoders); a *strided* window after upsampling
only samples some phases, and there the worst phase is an upper bound (nearest x2 then
a 2/2 pool reads one source, reported as two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from rfalint.graph import Graph, Transfer

Pair = tuple[Fraction, Fraction, Fraction]  # (r, jump, grid)


def _prune(pairs: set[Pair], largest: bool) -> tuple[Pair, ...]:
    """Keep the Pareto front per grid: for max, drop states whose r and j are both no
    larger than another's on the same grid (for min, no smaller)."""
    sign = 1 if largest else -1
    ordered = sorted(pairs, key=lambda p: (p[2], sign * p[0], sign * p[1]), reverse=True)
    front: list[Pair] = []
    best: dict[Fraction, Fraction] = {}
    for r, j, g in ordered:
        if g not in best or sign * j > sign * best[g]:
            front.append((r, j, g))
            best[g] = j
    return tuple(sorted(front))


def _step(r: Fraction, j: Fraction, g: Fraction, t: Transfer) -> Pair:
    grown = r + math.ceil((t.span - 1) * j / g) * g
    j_out = j * t.stride
    # Once the sampled units land on distinct sources again (j a multiple of the grid),
    # they form a plain grid of spacing j.
    g_out = j_out if (j_out / g).denominator == 1 else g
    return grown, j_out, g_out


def _apply(pairs: tuple[Pair, ...], t: Transfer) -> set[Pair]:
    return {_step(r, j, g, t) for r, j, g in pairs}


@dataclass(frozen=True)
class AxisFronts:
    """Pareto fronts of one node on one axis."""

    upper: tuple[Pair, ...]  # front for r_max
    lower: tuple[Pair, ...]  # front for r_min

    @property
    def r_max(self) -> Fraction:
        return max(r for r, _, _ in self.upper)

    @property
    def r_min(self) -> Fraction:
        return min(r for r, _, _ in self.lower)

    @property
    def jump(self) -> Fraction:
        return max(j for _, j, _ in self.upper)

    def through(self, t: Transfer) -> "AxisFronts":
        return AxisFronts(_prune(_apply(self.upper, t), True), _prune(_apply(self.lower, t), False))

    @staticmethod
    def union(fronts: list["AxisFronts"]) -> "AxisFronts":
        upper = set().union(*(f.upper for f in fronts))
        lower = set().union(*(f.lower for f in fronts))
        return AxisFronts(_prune(upper, True), _prune(lower, False))


_ONE = (Fraction(1), Fraction(1), Fraction(1))
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
