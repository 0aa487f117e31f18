"""Where each unit's receptive field lies: effective padding and exact regions.

See docs/method.md §4. Per node and axis, a *region* maps an output unit u to the
interval of input pixels ``[lo(u), hi(u)]`` that its paths read, before clipping to the
image: the leftmost start and the rightmost end over all paths. Every op is itself such
a map from its output units to its input units, and the region of a node is the region
of its input composed with the op's map. Both are monotone, so composing the bounds is
exact; a merge takes the pointwise min of starts and max of ends. No path is ever
enumerated.

The maps are *quasi-periodic*: ``lo(u + period) = lo(u) + step`` (same for ``hi``), so
one period of values describes all units, outside the map too. Without upsampling the
period is 1 and ``lo(u) = u * S - P``: S is the effective stride, P the effective
padding. Upsampling by f makes f consecutive units differ (their phase), so the period
grows to f; a later stride folds phases back together.

A merge of operands with different effective strides (rare) keeps one piece per stride.
An op whose offsets rfalint cannot determine (an unknown op, ``align_corners=True``
resizing, uneven adaptive pooling, a transposed conv that leaves outputs unread) makes
the region unknown (``None``) from there on: its P is reported as null, never as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from rfalint.graph import Kind, Node, Resample, Window

MAX_PERIOD = 4096  # beyond this, phases are not tracked and the region is unknown


class IndexMap(NamedTuple):
    """Unit u -> inclusive interval ``[q*step + lo[phase], q*step + hi[phase]]`` with
    ``q, phase = divmod(u, period)``; ``lo`` and ``hi`` are non-decreasing in u."""

    period: int
    step: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    def start(self, u: int) -> int:
        q, phase = divmod(u, self.period)
        return q * self.step + self.lo[phase]

    def end(self, u: int) -> int:
        q, phase = divmod(u, self.period)
        return q * self.step + self.hi[phase]

    @property
    def slope(self) -> Fraction:
        """Input pixels per output unit: the effective stride S."""
        return Fraction(self.step, self.period)

    def then(self, op: "IndexMap") -> "IndexMap | None":
        """This map read through ``op`` (output unit -> units of this map's domain)."""
        if self.period == 1 and op.period == 1:  # no phases: the textbook recurrence
            return IndexMap(1, self.step * op.step, (self.lo[0] + op.lo[0] * self.step,),
                            (self.hi[0] + op.hi[0] * self.step,))
        folds = self.period // math.gcd(self.period, op.step)
        period = op.period * folds
        if period > MAX_PERIOD:
            return None
        step = op.step * folds // self.period * self.step
        lo = tuple(self.start(op.start(u)) for u in range(period))
        hi = tuple(self.end(op.end(u)) for u in range(period))
        return IndexMap(period, step, lo, hi).reduced()

    def widened(self, period: int) -> "IndexMap":
        """The same map written with a multiple of its period."""
        if period == self.period:
            return self
        times = period // self.period
        return IndexMap(period, self.step * times, tuple(self.start(u) for u in range(period)),
                        tuple(self.end(u) for u in range(period)))

    def reduced(self) -> "IndexMap":
        """The same map with its smallest period."""
        for period in range(1, self.period):
            if self.period % period or (self.step * period) % self.period:
                continue
            step = self.step * period // self.period
            if all(self.lo[u + period] == self.lo[u] + step and
                   self.hi[u + period] == self.hi[u] + step
                   for u in range(self.period - period)):
                return IndexMap(period, step, self.lo[:period], self.hi[:period])
        return self

    def centre_offset(self) -> Fraction:
        """Mean over phases of (centre of the interval - u * S): where the fields lie
        relative to the unit lattice, Distill's ``(r - 1)/2 - P`` for one phase."""
        slope = self.slope
        total = sum(Fraction(lo + hi, 2) - u * slope
                    for u, (lo, hi) in enumerate(zip(self.lo, self.hi)))
        return total / self.period


IDENTITY_MAP = IndexMap(1, 1, (0,), (0,))


class AxisRegion(NamedTuple):
    """The region of one node on one axis: one map per distinct effective stride."""

    pieces: tuple[IndexMap, ...]

    def at(self, u: int) -> tuple[int, int]:
        return (min(p.start(u) for p in self.pieces), max(p.end(u) for p in self.pieces))

    @property
    def eff_padding(self) -> int:
        """P: how far unit 0's field starts before the first input pixel."""
        return -self.at(0)[0]

    def extent(self, size: int) -> int:
        """Largest ``hi - lo + 1`` over units: one period, or every unit of a map of
        ``size`` units when strides differ (the field then changes along the map)."""
        if len(self.pieces) == 1:
            piece = self.pieces[0]
            return max(hi - lo for lo, hi in zip(piece.lo, piece.hi)) + 1
        return max(hi - lo + 1 for lo, hi in map(self.at, range(max(1, size))))

    def then(self, op: IndexMap) -> "AxisRegion | None":
        pieces = [p.then(op) for p in self.pieces]
        if any(p is None for p in pieces):
            return None
        if len(pieces) == 1:
            return AxisRegion((pieces[0],))
        return AxisRegion.union([AxisRegion((p,)) for p in pieces])

    @staticmethod
    def union(regions: list["AxisRegion"]) -> "AxisRegion | None":
        pieces = [piece for region in regions for piece in region.pieces]
        first = pieces[0]
        if first.period == 1 and all(p.period == 1 and p.step == first.step for p in pieces):
            return AxisRegion((IndexMap(1, first.step, (min(p.lo[0] for p in pieces),),
                                        (max(p.hi[0] for p in pieces),)),))
        by_slope: dict[Fraction, list[IndexMap]] = {}
        for piece in pieces:
            by_slope.setdefault(piece.slope, []).append(piece)
        pieces = []
        for slope in sorted(by_slope):
            group = by_slope[slope]
            period = math.lcm(*(p.period for p in group))
            if period > MAX_PERIOD:
                return None
            wide = [p.widened(period) for p in group]
            merged = IndexMap(period, wide[0].step,
                              tuple(min(v) for v in zip(*(p.lo for p in wide))),
                              tuple(max(v) for v in zip(*(p.hi for p in wide))))
            pieces.append(merged.reduced())
        return AxisRegion(tuple(pieces))


START = AxisRegion((IDENTITY_MAP,))


def _window_map(kernel: int, stride: int, lead: int, dilation: int,
                transposed: bool) -> IndexMap | None:
    footprint = dilation * (kernel - 1) + 1
    if not transposed:
        return IndexMap(1, stride, (-lead,), (footprint - 1 - lead,))
    # Input unit i writes output o = i * stride - lead + t * dilation, t < kernel.
    lo, hi = [], []
    for o in range(stride):
        read = [(o + lead - t * dilation) // stride for t in range(kernel)
                if (o + lead - t * dilation) % stride == 0]
        if not read:
            return None  # some outputs read no input (kernel sparser than the stride)
        lo.append(min(read))
        hi.append(max(read))
    return IndexMap(stride, 1, tuple(lo), tuple(hi))


def _resample_map(scale: Fraction, mode: str) -> IndexMap | None:
    """Output unit -> source units of upsampling by an integer factor, as PyTorch samples
    (``align_corners=False``): nearest reads ``floor(u / f)``, linear and cubic modes
    read around ``(u + 0.5) / f - 0.5`` (one tap where that is a whole pixel)."""
    if scale == 1:
        return IDENTITY_MAP
    if scale.denominator != 1:
        return None
    f = int(scale)
    if mode in ("nearest", "nearest-exact", "pixel_shuffle"):
        return IndexMap(f, 1, (0,) * f, (0,) * f)
    reach = {"linear": (0, 1), "bilinear": (0, 1), "trilinear": (0, 1), "bicubic": (-1, 2)}
    if mode not in reach:
        return None
    lo, hi = [], []
    for u in range(f):
        source = Fraction(2 * u + 1 - f, 2 * f)
        first = math.floor(source)
        if source == first:
            lo.append(first)
            hi.append(first)
        else:
            lo.append(first + reach[mode][0])
            hi.append(first + reach[mode][1])
    return IndexMap(f, 1, tuple(lo), tuple(hi))


def node_maps(node: Node, ndim: int) -> tuple[IndexMap, ...] | None:
    """Per axis, the map from the node's output units to its input units; None when
    rfalint cannot tell where its outputs read."""
    if node.kind is Kind.UNKNOWN:
        return None
    g = node.geometry
    if isinstance(g, Window):
        if not g.exact:
            return None
        axes = list(zip(g.kernel, g.stride, g.padding, g.dilation))
        if all(a == axes[0] for a in axes):  # square windows: one map for every axis
            maps = (_window_map(*axes[0], g.transposed),) * len(axes)
        else:
            maps = tuple(_window_map(k, s, p, d, g.transposed) for k, s, p, d in axes)
    elif isinstance(g, Resample):
        if g.align_corners:
            return None
        maps = tuple(_resample_map(s, g.mode) for s in g.scale)
    else:
        return (IDENTITY_MAP,) * ndim
    return None if any(m is None for m in maps) else maps


NodeRegion = tuple[AxisRegion, ...]


def through(region: NodeRegion | None, maps: tuple[IndexMap, ...] | None) -> NodeRegion | None:
    if region is None or maps is None:
        return None
    if all(m is IDENTITY_MAP for m in maps):
        return region
    axes: list[AxisRegion | None] = []
    for i, (axis, m) in enumerate(zip(region, maps)):
        same = i and axis is region[i - 1] and m is maps[i - 1]
        axes.append(axes[-1] if same else axis.then(m))  # square maps: compute once
    return None if any(a is None for a in axes) else tuple(axes)


def union(regions: list[NodeRegion | None]) -> NodeRegion | None:
    if any(r is None for r in regions):
        return None
    if len(regions) == 1:
        return regions[0]
    axes: list[AxisRegion | None] = []
    for i, axis in enumerate(zip(*regions)):
        same = i and all(a is r[i - 1] for a, r in zip(axis, regions))
        axes.append(axes[-1] if same else AxisRegion.union(list(axis)))
    return None if any(a is None for a in axes) else tuple(axes)


@dataclass(frozen=True)
class Placement:
    """Where the fields of a node's units lie on one axis, for alignment checks."""

    stride: Fraction  # S, input pixels per unit
    centre: Fraction  # mean over phases of (field centre - u * S), in input pixels
    widths: tuple[int, ...]  # hi - lo + 1 per phase, over one period


def placement(axis: AxisRegion) -> Placement | None:
    """None when the node mixes effective strides (the offset then varies per unit)."""
    if len(axis.pieces) != 1:
        return None
    [piece] = axis.pieces
    return Placement(piece.slope, piece.centre_offset(),
                     tuple(h - l + 1 for l, h in zip(piece.lo, piece.hi)))
