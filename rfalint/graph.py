"""The one graph representation every rfalint stage shares.

Capture builds it, the RF engine and the cost model annotate it by node id, rules and
reports read it, and ``fix``/``export`` rewrite and serialise it.

A :class:`Graph` is a list of :class:`Node` in execution order, so the list is already a
topological order. Each node is a leaf module call or a functional op; edges are the
tensor dataflow (``Node.inputs`` are ids of producing nodes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator

import torch.nn as nn

if TYPE_CHECKING:
    from rfalint.ops import Registry


class Kind(str, enum.Enum):
    """What an op does to spatial positions; the RF engine dispatches on this."""

    INPUT = "input"
    CONV = "conv"  # parametric sliding window: Conv*, ConvTranspose*, Linear/1x1 over positions
    POOL = "pool"  # parameter-free sliding window: max/avg/lp pools, pixel_unshuffle
    RESAMPLE = "resample"  # interpolate / upsample / pixel_shuffle (no weights)
    POINTWISE = "pointwise"  # per position: activations, norms, dropout, channel slicing, reshapes
    MERGE = "merge"  # several inputs combined per position: add, mul, cat on channels
    GLOBAL = "global"  # mixes all positions: global pooling, flatten, mean over space
    NONSPATIAL = "nonspatial"  # op on tensors that have no spatial axes left (head, gates)
    UNKNOWN = "unknown"  # op rfalint does not understand; always reported as a finding


@dataclass(frozen=True)
class Transfer:
    """Per-axis effect on receptive fields.

    ``r' = r + (span - 1) * j`` and ``j' = j * stride``. ``span`` is how many input
    positions one output position reads; ``stride < 1`` for upsampling.
    """

    span: int = 1
    stride: Fraction = Fraction(1)


IDENTITY = Transfer()


def fmt_axes(values) -> str:
    """(44, 44) -> '44'; (44, 20) -> '44x20'."""
    values = tuple(values)
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


@dataclass
class Window:
    """Sliding-window geometry per spatial axis (conv, pool, transposed conv, pad, crop).

    ``padding`` is the padding on the leading side of each axis (negative: a crop), so
    output unit u reads input units ``u * stride - padding`` onwards (for a transposed
    conv, input unit i writes output units from ``i * stride - padding``).
    ``exact`` is False when the window only bounds the op (adaptive pooling with uneven
    windows, ``align_corners=True`` resizing): sizes stay usable, offsets are unknown.
    See docs/method.md §4.
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    transposed: bool = False
    exact: bool = True

    def transfers(self) -> tuple[Transfer, ...]:
        out = []
        for k, s, d in zip(self.kernel, self.stride, self.dilation):
            footprint = d * (k - 1) + 1
            if self.transposed:
                # One output position reads ceil(footprint / s) input positions; jump shrinks.
                out.append(Transfer(-(-footprint // s), Fraction(1, s)))
            else:
                out.append(Transfer(footprint, Fraction(s)))
        return tuple(out)

    def label(self) -> str:
        """kernel/stride for tables: '3/2', '1x7/1 d2', '2/2 T' (transposed)."""
        text = f"{fmt_axes(self.kernel)}/{fmt_axes(self.stride)}"
        if max(self.dilation) > 1:
            text += f" d{fmt_axes(self.dilation)}"
        return text + (" T" if self.transposed else "")

    def footprint(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))


@dataclass
class Resample:
    """Interpolation geometry per spatial axis: scale (out/in) and taps read per output.

    ``align_corners`` as in ``F.interpolate``: with it, linear and cubic modes sample a
    grid that depends on the map sizes, so unit offsets are not a fixed lattice.
    """

    scale: tuple[Fraction, ...]
    taps: tuple[int, ...]
    mode: str = "nearest"
    align_corners: bool = False

    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(Transfer(t, 1 / s) for s, t in zip(self.scale, self.taps))


@dataclass
class Node:
    """One op in the captured graph.

    ``layout`` names the tensor dims that hold spatial axes (axis i lives in dim
    ``layout[i]``), or is ``None`` once the tensor has no spatial axes (after global
    pooling or flatten). ``gates`` are input positions excluded from spatial RF
    propagation (squeeze-and-excitation style multipliers computed from a global pool).
    """

    id: int
    name: str
    op: str
    kind: Kind
    inputs: list[int]
    out_shapes: list[tuple[int, ...]]
    layout: tuple[int, ...] | None
    in_shape: tuple[int, ...] | None = None
    geometry: Window | Resample | None = None
    module: nn.Module | None = field(default=None, repr=False)
    call_args: dict[str, Any] = field(default_factory=dict)
    gates: tuple[int, ...] = ()
    scope: str = ""
    note: str = ""
    input_slots: list[int] = field(default_factory=list)  # which output of each producer
    # The output shares its first input's storage (an in-place op or a view): it
    # allocates no activation memory of its own (docs/method.md §5).
    aliases: bool = False

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out_shapes[0] if self.out_shapes else ()

    @property
    def spatial_out(self) -> tuple[int, ...] | None:
        """Output feature-map size per spatial axis, or None when non-spatial."""
        if self.layout is None:
            return None
        return tuple(self.out_shape[d] for d in self.layout)

    def transfers(self, ndim: int) -> tuple[Transfer, ...]:
        if isinstance(self.geometry, (Window, Resample)):
            return self.geometry.transfers()
        return (IDENTITY,) * ndim

    @property
    def params(self) -> int:
        if self.module is None:
            return 0
        return sum(p.numel() for p in self.module.parameters())


@dataclass
class Graph:
    """Nodes in execution order. ``nodes[i].id == i``; node 0 is the input."""

    nodes: list[Node]
    input_shape: tuple[int, ...]  # (C, *spatial), without batch
    outputs: list[int]
    model_name: str = "model"
    capture_mode: str = "meta"  # "meta"/"fake": shapes only, no compute; "real": data-dependent
    head_error: str = ""  # set when the head failed at this resolution; outputs then end before it
    # node id of a gated multiplication -> the gate's kind ("channel", "spatial",
    # "branch-selection"); rfalint.capture.gates fills it (docs/method.md §3)
    gate_kinds: dict[int, str] = field(default_factory=dict)
    # Output node id -> where the forward returned it: "0" for a lone tensor, the index in a
    # tuple, the key in a dict ("p3"), joined with "." when nested.
    output_names: dict[int, str] = field(default_factory=dict)
    # The op registry the graph was captured with: the cost model counts MACs with it.
    registry: "Registry | None" = field(default=None, repr=False, compare=False)

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1

    @property
    def resolution(self) -> tuple[int, ...]:
        return tuple(self.input_shape[1:])

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def by_name(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def ancestors(self, node_id: int) -> set[int]:
        """``node_id`` and every node it depends on."""
        seen, stack = {node_id}, [node_id]
        while stack:
            for src in self.nodes[stack.pop()].inputs:
                if src not in seen:
                    seen.add(src)
                    stack.append(src)
        return seen

    def consumers(self) -> list[list[int]]:
        """Adjacency list: for each node id, the ids of nodes that read it."""
        users: list[list[int]] = [[] for _ in self.nodes]
        for node in self.nodes:
            for src in node.inputs:
                users[src].append(node.id)
        return users
