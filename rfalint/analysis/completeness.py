"""Which numbers rfalint can vouch for (docs/method.md §3).

An op rfalint does not understand (``Kind.UNKNOWN``, finding RFA201) is passed through as
if it kept the RF, so every RF downstream of it, along feature paths, is only a lower
bound; where the op also lost the spatial layout, later RFs are unknown. The border, the
tail, coverage and the resolution range all read those RFs, so an analysis with such an op
in the feature extractor is *incomplete* and says so, like torchscan marks its metrics.
"""

from __future__ import annotations

import enum

from rfalint.analysis.rf import NodeRF
from rfalint.graph import Graph, Kind


class RFStatus(str, enum.Enum):
    EXACT = "exact"
    LOWER_BOUND = "lower_bound"
    UNKNOWN = "unknown"


def rf_status(graph: Graph, rfs: list[NodeRF | None]) -> list[RFStatus]:
    """Per node: exact, a lower bound (an unknown op upstream on a feature path), or
    unknown (that op also dropped the spatial layout, so no RF could be computed)."""
    tainted = [False] * len(graph)
    for node in graph:
        tainted[node.id] = node.kind is Kind.UNKNOWN or any(
            tainted[src] for pos, src in enumerate(node.inputs) if pos not in node.gates)
    return [RFStatus.EXACT if not bad else
            RFStatus.LOWER_BOUND if rfs[i] is not None else RFStatus.UNKNOWN
            for i, bad in enumerate(tainted)]


def is_complete(graph: Graph, status: list[RFStatus], ends: list[int]) -> bool:
    """True when every node that feeds one of ``ends`` (readouts, outputs) is exact."""
    feeding = set().union(*(graph.ancestors(e) for e in ends)) if ends else set()
    return all(status[i] is RFStatus.EXACT for i in feeding)
