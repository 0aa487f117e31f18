"""Stage 3 of the pipeline: receptive fields, border/tail and cost of a captured graph."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

from rfalint.analysis.border import Border, SequenceLayer, LayerStatus, covers, find_border
from rfalint.analysis.completeness import RFStatus, is_complete, rf_status
from rfalint.analysis.objects import (ObjectSize, OutputView, output_views,
                                      parse_object_sizes, resolve)
from rfalint.analysis.rf import NodeRF, receptive_fields
from rfalint.graph import Graph, Kind, Window, fmt_axes


@dataclass
class Analysis:
    """Everything the rules and reports read: the graph and what was computed on it."""

    graph: Graph
    rfs: list[NodeRF | None]
    border: Border
    object_size: ObjectSize | None = None  # the primary border's reference, when not the image
    outputs: list[OutputView] = field(default_factory=list)  # one per model output
    rf_status: list[RFStatus] = field(default_factory=list)  # per node id
    complete: bool = True  # no op on the way to a readout or output is unknown
    gates_included: bool = False  # spatial gates analysed as feature paths

    def layer_name(self, node_id: int | None) -> str | None:
        return None if node_id is None else self.graph[node_id].name

    @property
    def rf_final(self) -> NodeRF:
        """RF of the feature map entering the readout (or the last spatial output)."""
        return self.rfs[self.border.end]

    @property
    def reference(self) -> tuple[int, ...]:
        """The size per axis that the border rules compare RFs with."""
        return self.border.reference

    def reference_label(self) -> str:
        """'32 px' for the image, 'object 32 px' for an object size (docs/method.md §5)."""
        size = f"{fmt_axes(self.border.reference)} px"
        return f"object {size}" if self.object_size is not None else size

    def effective_kernel(self, node_id: int) -> tuple[Fraction, ...] | None:
        """A conv's kernel footprint times the jump of its input, per axis: the filter's
        size measured in input pixels (docs/method.md §5); None for other nodes."""
        node = self.graph[node_id]
        if node.kind is not Kind.CONV or not isinstance(node.geometry, Window):
            return None
        rf_in = self.rfs[node.inputs[0]]
        if rf_in is None:
            return None
        return tuple(f * j for f, j in zip(node.geometry.footprint(), rf_in.jump))


def analyze_graph(graph: Graph, object_sizes: dict[str | None, ObjectSize] | None = None,
                  rfs: list[NodeRF | None] | None = None,
                  include_gates: bool = False) -> Analysis:
    """RFs, the primary border and one border per output. ``object_sizes`` (from
    :func:`parse_object_sizes`) replaces the image size as the reference; ``rfs`` reuses
    receptive fields computed on a graph of the same geometry (the resolution sweep).
    ``include_gates`` analyses full-size spatial gates as feature paths (the literal max
    over every path) instead of excluding them, the default (docs/method.md §3)."""
    if include_gates:
        graph = _with_spatial_gates_as_features(graph)
    rfs = receptive_fields(graph) if rfs is None else rfs
    global_size, per_output = resolve(graph, object_sizes)
    views = output_views(graph, rfs, global_size, per_output)
    border = find_border(graph, rfs, global_size.high if global_size else None)
    primary = global_size
    for view in views:  # the primary path ends in one output: its own size applies
        if view.node in per_output and (view.border.readout, view.border.end) == \
                (border.readout, border.end):
            primary = view.objects
            border = find_border(graph, rfs, primary.high)
    status = rf_status(graph, rfs)
    ends = [border.end, *graph.outputs] if border.readout is None else [border.readout]
    return Analysis(graph, rfs, border, primary, views, status,
                    is_complete(graph, status, ends), include_gates)


def _with_spatial_gates_as_features(graph: Graph) -> Graph:
    """A copy of ``graph`` whose full-size gate operands count as feature paths; gates
    broadcast over space (computed from a global pool) stay excluded: they have no
    finite spatial RF."""
    nodes = []
    kinds = dict(graph.gate_kinds)
    for node in graph:
        keep = tuple(pos for pos in node.gates
                     if graph[node.inputs[pos]].spatial_out != node.spatial_out)
        if keep != node.gates:
            node = replace(node, gates=keep, kind=Kind.MERGE)
            if not keep:
                kinds.pop(node.id, None)
        nodes.append(node)
    return replace(graph, nodes=nodes, gate_kinds=kinds)


__all__ = ["Analysis", "Border", "NodeRF", "ObjectSize", "OutputView", "RFStatus", "SequenceLayer",
           "LayerStatus", "analyze_graph", "covers", "parse_object_sizes"]
