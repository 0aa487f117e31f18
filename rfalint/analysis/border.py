"""Border layers, tail and layer status (docs/method.md §2).

Definitions implemented here:

* **Feature extractor**: nodes with spatial axes, plus gate branches (non-spatial nodes
  whose result is multiplied back into a feature map). **Head**: non-spatial nodes that
  never flow back into a feature map. **Readout**: the last head node fed by a feature
  map (global pooling, flatten); without one (fully convolutional nets) the extractor
  ends at the last spatial output.
* **Main path**: the input -> readout path with the most conv layers (kind CONV). Ties go
  to the predecessor with the larger r_max, then to the earlier argument. For ResNet this
  is stem conv then block convs; shortcut projections and merges are off the sequence.
* **Layer sequence**: the conv layers on the main path, in execution order.
* ``r_{l-1}`` of sequence layer l: the RF of the previous sequence layer's output
  (min and max over *all* paths), carried along the main path to l's input (through the
  pools, activations and merges in between, whose other operands are not added). This
  is the paper's literal definition for ResNets (b_min 12 for ResNet18 at 32 px, where
  the paper's plot reads 11) and for VGG it equals the RF of the conv's input (44 for
  VGG16 conv 8 at 32 px).
* A layer is *covered* when ``r_{l-1} > I`` on every spatial axis (I per axis). I is the
  image size, or the object size when one is given (``reference``, docs/method.md §5).
  **b_min**: first sequence layer from which every later one is covered by r_min;
  **b_max** the same with r_max. **Tail**: b_min and every extractor node the truncated
  network would drop (nodes feeding the readout that are not ancestors of b_min's
  input). **Critical**: outside the tail, covered by r_max.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rfalint.analysis.rf import NodeRF
from rfalint.graph import Graph, Kind


class LayerStatus(str, enum.Enum):
    """What a node does for the input resolution; reports print ``status.value``."""

    PRODUCTIVE = "productive"  # its input does not yet cover the image
    CRITICAL = "critical"  # covered by r_max but not by r_min, outside the tail
    UNPRODUCTIVE = "unproductive"  # in the tail: truncation drops it
    HEAD = "head"  # non-spatial classifier after the readout


@dataclass
class SequenceLayer:
    """A conv layer of the main path with the RF its input carries."""

    node: int
    index: int  # 1-based position in the sequence
    r_in_min: tuple[int, ...]
    r_in_max: tuple[int, ...]


@dataclass
class Border:
    head: set[int]
    gates: set[int]
    readout: int | None
    end: int  # last node of the feature extractor (input of the readout)
    main_path: list[int]
    sequence: list[SequenceLayer]
    b_min: SequenceLayer | None
    b_max: SequenceLayer | None
    cut: int | None  # node whose output the truncated network keeps
    tail: list[int]
    status: list[LayerStatus] = field(default_factory=list)
    reference: tuple[int, ...] = ()  # the size RFs were compared with, per axis


def covers(r: tuple[int, ...], size: tuple[int, ...]) -> bool:
    """True when the RF exceeds the image on every axis (strictly, as in the paper)."""
    return all(ri > si for ri, si in zip(r, size))


def _split_head(graph: Graph) -> tuple[set[int], set[int]]:
    """Non-spatial nodes that reach a spatial node are gates; the rest are the head."""
    reaches_spatial = [False] * len(graph)
    users = graph.consumers()
    for node in reversed(graph.nodes):
        reaches_spatial[node.id] = any(
            graph[u].layout is not None or reaches_spatial[u] for u in users[node.id])
    head, gates = set(), set()
    for node in graph:
        if node.layout is None and node.kind is not Kind.INPUT:
            (gates if reaches_spatial[node.id] else head).add(node.id)
    return head, gates


def _longest_paths(graph: Graph, rfs: list[NodeRF | None]) -> tuple[list[int], list[int | None]]:
    """For every spatial node, the most conv layers on a path from the input, and the
    predecessor on that path (dynamic programming over the execution order)."""
    count = [0] * len(graph)
    best_pred: list[int | None] = [None] * len(graph)
    for node in graph:
        if rfs[node.id] is None:
            continue
        preds = [s for pos, s in enumerate(node.inputs)
                 if pos not in node.gates and rfs[s] is not None]
        if preds:
            # max() keeps the first of equal keys: earliest argument wins the last tie.
            best_pred[node.id] = max(preds, key=lambda s: (count[s], sum(rfs[s].r_max)))
            count[node.id] = count[best_pred[node.id]]
        count[node.id] += node.kind is Kind.CONV
    return count, best_pred


def _feature_end(graph: Graph, head: set[int], rfs: list[NodeRF | None], count: list[int],
                 output: int | None = None) -> tuple[int | None, int]:
    """The readout and the feature map entering it. With several readouts (auxiliary or
    early-exit heads) the deepest one wins: most conv layers, then larger r_max, then later.
    With ``output``, only that output's own readouts (or the output itself) compete."""
    if output is not None:
        feeding = graph.ancestors(output)
        ends = [(n.id, s) for n in graph if n.id in head and n.id in feeding
                for s in n.inputs if rfs[s] is not None]
        if rfs[output] is not None:
            ends.append((None, output))
        if ends:
            return max(ends, key=lambda e: (count[e[1]], sum(rfs[e[1]].r_max), e[1]))
    ends = [(n.id, s) for n in graph if n.id in head for s in n.inputs if rfs[s] is not None]
    if not ends:
        ends = [(None, o) for o in graph.outputs if rfs[o] is not None]
    if not ends:
        ends = [(None, n.id) for n in graph if rfs[n.id] is not None]
    return max(ends, key=lambda e: (count[e[1]], sum(rfs[e[1]].r_max), e[1]))


def _main_path(end: int, best_pred: list[int | None]) -> list[int]:
    """The longest path (in conv layers) from the input to ``end``."""
    path = [end]
    while best_pred[path[-1]] is not None:
        path.append(best_pred[path[-1]])
    return path[::-1]


def _sequence(graph: Graph, path: list[int], rfs: list[NodeRF | None]) -> list[SequenceLayer]:
    ndim = graph.spatial_dims
    layers: list[SequenceLayer] = []
    carried = rfs[path[0]]
    for node_id in path[1:]:
        node = graph[node_id]
        if node.kind is Kind.CONV:
            layers.append(SequenceLayer(node_id, len(layers) + 1, carried.r_min, carried.r_max))
            carried = rfs[node_id]
        else:
            carried = carried.through(node.transfers(ndim))
    return layers


def find_border(graph: Graph, rfs: list[NodeRF | None],
                reference: tuple[int, ...] | None = None, output: int | None = None) -> Border:
    """Border and tail against ``reference`` (default: the image size), along the main
    path of the deepest readout, or of ``output``'s own path (docs/method.md §5)."""
    size = tuple(reference) if reference is not None else graph.resolution
    head, gates = _split_head(graph)
    count, best_pred = _longest_paths(graph, rfs)
    readout, end = _feature_end(graph, head, rfs, count, output)
    path = _main_path(end, best_pred)
    seq = _sequence(graph, path, rfs)

    def border_of(attr: str) -> SequenceLayer | None:
        found = None
        for layer in reversed(seq):
            if not covers(getattr(layer, attr), size):
                break
            found = layer
        return found

    b_min, b_max = border_of("r_in_min"), border_of("r_in_max")
    cut = None
    tail: list[int] = []
    if b_min is not None:
        cut = path[path.index(b_min.node) - 1]
        kept = graph.ancestors(cut)
        feeding = graph.ancestors(readout if readout is not None else end)
        tail = [n.id for n in graph if n.id in feeding and n.id not in kept and n.id not in head
                and n.id != readout]
    border = Border(head, gates, readout, end, path, seq, b_min, b_max, cut, tail,
                    reference=size)
    border.status = _status(graph, border, rfs)
    return border


def _status(graph: Graph, border: Border, rfs: list[NodeRF | None]) -> list[LayerStatus]:
    size = border.reference
    tail = set(border.tail)
    on_path = set(border.main_path)
    seq_status = {layer.node: LayerStatus.CRITICAL if covers(layer.r_in_max, size)
                  else LayerStatus.PRODUCTIVE for layer in border.sequence}
    status: list[LayerStatus] = []
    current = LayerStatus.PRODUCTIVE
    for node in graph:
        if node.id in border.head:
            status.append(LayerStatus.HEAD)
        elif node.id in tail:
            status.append(LayerStatus.UNPRODUCTIVE)
        elif node.id in seq_status:
            current = seq_status[node.id]
            status.append(current)
        elif node.id in on_path:
            status.append(current)
        else:
            inputs = [rfs[s] for s in node.inputs if rfs[s] is not None]
            hit = any(covers(r.r_max, size) for r in inputs)
            status.append(LayerStatus.CRITICAL if hit else LayerStatus.PRODUCTIVE)
    return status
