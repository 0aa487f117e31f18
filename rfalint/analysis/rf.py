"""Receptive fields of every node: min and max over all input paths, per spatial axis.

Each node keeps, per axis, two small Pareto sets of ``(r, jump)`` pairs: one for the
largest and one for the smallest RF over paths. A layer maps ``(r, j)`` to
``(r + (span - 1) * j, j * stride)``, which is monotone in both, so dominated pairs can be
dropped without losing the true min/max later. A merge is the union of its inputs'
sets. Cost is linear in the number of nodes; paths are never enumerated (DenseNet has
exponentially many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from rfalint.graph import Graph, Transfer

Pair = tuple[Fraction, Fraction]  # (r, jump)


def _prune(pairs: set[Pair], largest: bool) -> tuple[Pair, ...]:
    """Keep the Pareto front: for max, drop pairs with both r and j no larger than another."""
    sign = 1 if largest else -1
    ordered = sorted(pairs, key=lambda p: (sign * p[0], sign * p[1]), reverse=True)
    front: list[Pair] = []
    best_j = None
    for r, j in ordered:
        if best_j is None or sign * j > sign * best_j:
            front.append((r, j))
            best_j = j
    return tuple(sorted(front))


def _apply(pairs: tuple[Pair, ...], t: Transfer) -> set[Pair]:
    return {(r + (t.span - 1) * j, j * t.stride) for r, j in pairs}


@dataclass(frozen=True)
class AxisFronts:
    """Pareto fronts of one node on one axis."""

    upper: tuple[Pair, ...]  # front for r_max
    lower: tuple[Pair, ...]  # front for r_min

    @property
    def r_max(self) -> Fraction:
        return max(r for r, _ in self.upper)

    @property
    def r_min(self) -> Fraction:
        return min(r for r, _ in self.lower)

    @property
    def jump(self) -> Fraction:
        return max(j for _, j in self.upper)

    def through(self, t: Transfer) -> "AxisFronts":
        return AxisFronts(_prune(_apply(self.upper, t), True), _prune(_apply(self.lower, t), False))

    @staticmethod
    def union(fronts: list["AxisFronts"]) -> "AxisFronts":
        upper = set().union(*(f.upper for f in fronts))
        lower = set().union(*(f.lower for f in fronts))
        return AxisFronts(_prune(upper, True), _prune(lower, False))


START = AxisFronts(((Fraction(1), Fraction(1)),), ((Fraction(1), Fraction(1)),))


@dataclass(frozen=True)
class NodeRF:
    """RF of a node's output, per spatial axis. ``None`` on nodes without spatial axes."""

    axes: tuple[AxisFronts, ...]

    @property
    def r_max(self) -> tuple[int, ...]:
        return tuple(_to_pixels(a.r_max) for a in self.axes)

    @property
    def r_min(self) -> tuple[int, ...]:
        return tuple(_to_pixels(a.r_min) for a in self.axes)

    @property
    def jump(self) -> tuple[Fraction, ...]:
        return tuple(a.jump for a in self.axes)

    def through(self, transfers: tuple[Transfer, ...]) -> "NodeRF":
        return NodeRF(tuple(a.through(t) for a, t in zip(self.axes, transfers)))

    @staticmethod
    def union(rfs: list["NodeRF"]) -> "NodeRF":
        return NodeRF(tuple(AxisFronts.union(list(axis)) for axis in zip(*(r.axes for r in rfs))))


def _to_pixels(r: Fraction) -> int:
    """After upsampling, r can be fractional in input pixels; a unit then straddles ceil(r)."""
    return math.ceil(r)


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
