"""Object sizes and per-output analysis (docs/method.md §5).

The border rule asks whether a layer's input RF already exceeds the size of the patterns
it has to find. For classification that size is about the image's; when the objects are
smaller (a detection level, objects on a larger canvas) the object size is the reference
instead. ``--object-size`` gives it globally (``32``, ``32x24``, a range ``8:64``) or per
output (``p3=8:64,p4=32:128``, keyed by the name or index under which the forward
returns the output, or by the output node's name). A range's border is computed against
its largest size: a layer is unproductive only if it is past the border for every object
of the range.

Every output of the model gets its own border along its own path
(:class:`OutputView`); the primary result (``Analysis.border``) stays the deepest
readout's, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from rfalint.analysis.border import Border, find_border
from rfalint.analysis.rf import NodeRF
from rfalint.errors import UsageError
from rfalint.graph import Graph, fmt_axes


@dataclass(frozen=True)
class ObjectSize:
    """A range of object sizes per spatial axis (``low == high`` for a single size)."""

    low: tuple[int, ...]
    high: tuple[int, ...]

    def label(self) -> str:
        if self.low == self.high:
            return f"{fmt_axes(self.high)} px"
        return f"{fmt_axes(self.low)}..{fmt_axes(self.high)} px"

    def per_axis(self, ndim: int) -> "ObjectSize":
        """A single size repeated over ``ndim`` axes, as ``--res N`` is."""
        if len(self.high) == ndim:
            return self
        if len(self.high) != 1:
            raise UsageError(f"{{object_size}} {self.label()} has {len(self.high)} axes, the "
                             f"input has {ndim}", options=True)
        return ObjectSize(self.low * ndim, self.high * ndim)


def _size(text: str, whole: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in text.lower().replace("×", "x").split("x"))
    except ValueError:
        sizes = ()
    if not sizes or len(sizes) > 3:
        raise UsageError(f"{{object_size}} expects N, HxW, LOW:HIGH or OUTPUT=..., got {whole!r}",
                         options=True)
    if any(s <= 0 for s in sizes):
        raise UsageError(f"{{object_size}} must be positive, got {whole!r}", options=True)
    return sizes


def parse_object_sizes(text: str) -> dict[str | None, ObjectSize]:
    """``"32"`` -> {None: 32}; ``"p3=8:64,p4=32:128"`` -> {"p3": 8..64, "p4": 32..128}.
    The key None applies to every output without its own entry."""
    sizes: dict[str | None, ObjectSize] = {}
    for item in text.split(","):
        key, _, value = item.strip().rpartition("=")
        key = key.strip() or None
        low_text, _, high_text = value.partition(":")
        low = _size(low_text, item)
        high = _size(high_text, item) if high_text else low
        if len(low) != len(high) or any(lo > hi for lo, hi in zip(low, high)):
            raise UsageError(f"{{object_size}} range must run from small to large, got {item!r}",
                             options=True)
        if key in sizes:
            raise UsageError(f"{{object_size}} gives {key or 'a global size'} twice", options=True)
        sizes[key] = ObjectSize(low, high)
    return sizes


@dataclass
class OutputView:
    """One output of the model: its border along its own path and what objects it sees."""

    node: int
    name: str  # where the forward returned it ("0", "p3")
    border: Border
    objects: ObjectSize | None  # None: compared with the image

    def final(self, rfs: list[NodeRF | None]) -> NodeRF:
        return rfs[self.border.end]

    def seen(self, rfs: list[NodeRF | None]) -> dict[str, tuple[tuple[int, int], ...] | None]:
        """Object sizes of the range, per axis, that a unit of this output sees whole on
        every path (s <= r_min), whole on some paths only (r_min < s <= r_max), and only
        in part (s > r_max); None where that part of the range is empty."""
        if self.objects is None:
            return {}
        rf = self.final(rfs)
        parts: dict[str, list[tuple[int, int] | None]] = {"whole": [], "some_paths": [],
                                                          "in_part": []}
        for lo, hi, r_min, r_max in zip(self.objects.low, self.objects.high, rf.r_min, rf.r_max):
            for part, a, b in (("whole", lo, min(hi, r_min)),
                               ("some_paths", max(lo, r_min + 1), min(hi, r_max)),
                               ("in_part", max(lo, r_max + 1), hi)):
                parts[part].append((a, b) if a <= b else None)
        return {part: None if None in ranges else tuple(ranges)
                for part, ranges in parts.items()}


def named_outputs(graph: Graph) -> dict[int, str]:
    """Output node id -> its name; graphs built without capture are named by position."""
    return graph.output_names or {o: str(i) for i, o in enumerate(graph.outputs)}


def _output_key(graph: Graph, key: str) -> int:
    names = list(named_outputs(graph).items())
    for position, (node_id, name) in enumerate(names):
        if key in (name, graph[node_id].name, str(position)):
            return node_id
    known = ", ".join(f"{name} ({graph[n].name})" for n, name in names)
    raise UsageError(f"{{object_size}} key {key!r} names no output of the model (outputs: {known})",
                     options=True)


def resolve(graph: Graph, sizes: dict[str | None, ObjectSize] | None
            ) -> tuple[ObjectSize | None, dict[int, ObjectSize]]:
    """The global object size and the per-output ones (by output node id), checked
    against the input: no object may be larger than the image."""
    if not sizes:
        return None, {}
    ndim = graph.spatial_dims
    checked = {key: size.per_axis(ndim) for key, size in sizes.items()}
    for key, size in checked.items():
        if any(h > s for h, s in zip(size.high, graph.resolution)):
            raise UsageError(f"{{object_size}} {size.label()} is larger than the input "
                             f"{fmt_axes(graph.resolution)} px", options=True)
    per_output = {_output_key(graph, key): size for key, size in checked.items()
                  if key is not None}
    return checked.get(None), per_output


def output_views(graph: Graph, rfs: list[NodeRF | None], global_size: ObjectSize | None,
                 per_output: dict[int, ObjectSize]) -> list[OutputView]:
    """Every output's border along its own path, against its own object size."""
    views = []
    for node_id, name in named_outputs(graph).items():
        objects = per_output.get(node_id, global_size)
        border = find_border(graph, rfs, objects.high if objects else None, output=node_id)
        views.append(OutputView(node_id, name, border, objects))
    return views
