"""Stage 3 of the pipeline: receptive fields, border/tail and cost of a captured graph."""

from __future__ import annotations

from dataclasses import dataclass

from rfalint.analysis.border import Border, SequenceLayer, covers, find_border
from rfalint.analysis.rf import NodeRF, receptive_fields
from rfalint.graph import Graph


@dataclass
class Analysis:
    """Everything the rules and reports read: the graph and what was computed on it."""

    graph: Graph
    rfs: list[NodeRF | None]
    border: Border

    def layer_name(self, node_id: int | None) -> str | None:
        return None if node_id is None else self.graph[node_id].name

    @property
    def rf_final(self) -> NodeRF:
        """RF of the feature map entering the readout (or the last spatial output)."""
        return self.rfs[self.border.end]


def analyze_graph(graph: Graph) -> Analysis:
    rfs = receptive_fields(graph)
    return Analysis(graph, rfs, find_border(graph, rfs))


__all__ = ["Analysis", "Border", "NodeRF", "SequenceLayer", "analyze_graph", "covers"]
