"""Gates, recognised by what they compute (docs/method.md §3).

A gate multiplies feature maps by weights that a branch of its own computes: squeeze-
and-excitation and CBAM's channel gate (sigmoid of a globally pooled vector), CBAM's and
attention U-Net's spatial gates (sigmoid of a full-size map), BAM's ``x * (1 + sigmoid(.))``
and the branch-selection weights of selective-kernel and split-attention blocks (a softmax
over the branch axis). The papers exclude such branches from spatial RF propagation and
from the layer sequence; the branches the weights choose between stay feature paths.

:func:`mark_gates` runs once over a captured graph. A node is *gate-valued* when it is a
sigmoid-family activation or a softmax, or a shape/arithmetic step (view, expand, split,
resampling, ``1 + g``, ``g * 0.5``) applied to one gate-valued tensor only. The gate-valued
operands of a ``mul`` are the gates of that ``mul``, whatever their shape. Gates by shape
(an operand broadcast over space), found at capture, are kept as they are.
"""

from __future__ import annotations

import enum

from rfalint.graph import Graph, Kind, Node


class GateKind(str, enum.Enum):
    CHANNEL = "channel"  # one weight per channel, broadcast over space (SE, CBAM channel)
    SPATIAL = "spatial"  # a full-size weight map (CBAM spatial, BAM, attention U-Net)
    BRANCH = "branch-selection"  # softmax weights over branches (SK, split attention)


# Ops (functional names and module class names) whose output is a gate's weights.
_SIGMOIDS = {"sigmoid", "hardsigmoid", "Sigmoid", "Hardsigmoid"}
_SOFTMAXES = {"softmax", "Softmax"}
# Ops that carry a gate's weights on when applied to one gate-valued tensor.
_CARRIERS = {"view", "reshape", "view_as", "reshape_as", "expand", "expand_as", "repeat",
             "broadcast_to", "unsqueeze", "squeeze", "getitem", "split", "chunk", "unbind",
             "tensor_split", "permute", "transpose", "contiguous", "clone", "to", "type_as",
             "flatten", "interpolate", "upsample", "Upsample", "add", "sub", "mul", "div",
             "Identity", "identity", "float", "half", "detach", "stack", "cat"}
_MULTIPLIERS = {"mul"}


def mark_gates(graph: Graph) -> None:
    """Add the gate-valued operands of every ``mul`` to its ``gates`` and record each
    gate's kind in ``graph.gate_kinds`` (node id of the ``mul`` -> kind)."""
    valued: dict[int, tuple[GateKind, int]] = {}  # node id -> (kind, sigmoid/softmax node)
    for node in graph:
        value = _gate_value(node, valued)
        if value is not None:
            valued[node.id] = value
            continue
        if node.op not in _MULTIPLIERS or node.layout is None:
            continue
        gate_ops = [pos for pos, src in enumerate(node.inputs) if src in valued]
        features = [pos for pos in range(len(node.inputs)) if pos not in gate_ops]
        if not gate_ops or not features or \
                _is_activation(graph, node.inputs[features[0]], valued[node.inputs[gate_ops[0]]][1]):
            continue
        node.gates = tuple(sorted({*node.gates, *gate_ops}))
        if len(features) == 1 and node.kind is Kind.MERGE:
            node.kind = Kind.POINTWISE
        graph.gate_kinds[node.id] = _kind(graph, node, gate_ops[0], valued)
    for node in graph:  # gates by shape (SE broadcast), found at capture
        if node.gates and node.layout is not None and node.id not in graph.gate_kinds:
            graph.gate_kinds[node.id] = GateKind.CHANNEL
    feeds_features = _feeds_features(graph)
    for node_id in [i for i in graph.gate_kinds if not feeds_features[i]]:
        del graph.gate_kinds[node_id]  # a step inside another gate's branch (BAM's sum)


def _feeds_features(graph: Graph) -> list[bool]:
    """Per node: whether its output reaches a model output along feature operands, i.e.
    not only through the gate operands of some ``mul``."""
    users = graph.consumers()
    outputs = set(graph.outputs)
    feeds = [False] * len(graph)
    for node in reversed(graph.nodes):
        feeds[node.id] = node.id in outputs or any(
            feeds[u] and any(src == node.id and pos not in graph[u].gates
                             for pos, src in enumerate(graph[u].inputs))
            for u in users[node.id])
    return feeds


def _gate_value(node: Node, valued: dict[int, tuple[GateKind, int]]) -> tuple[GateKind, int] | None:
    if node.op in _SIGMOIDS:
        return GateKind.SPATIAL, node.id
    if node.op in _SOFTMAXES:
        return GateKind.BRANCH, node.id
    if node.op in _CARRIERS and node.inputs:
        sources = set(node.inputs)
        if node.op in ("expand_as", "view_as", "reshape_as", "type_as"):
            sources = {node.inputs[0]}
        if all(s in valued for s in sources):
            return valued[node.inputs[0]]
    return None


def _pointwise_chain(graph: Graph, node_id: int) -> set[int]:
    """``node_id`` and its ancestors through single-input pointwise ops."""
    chain = {node_id}
    node = graph[node_id]
    while node.kind is Kind.POINTWISE and len(node.inputs) == 1:
        node = graph[node.inputs[0]]
        chain.add(node.id)
    return chain


def _is_activation(graph: Graph, feature: int, source: int) -> bool:
    """``x * sigmoid(x)`` (swish/SiLU written out) is an activation, not a gate: its
    sigmoid reads the feature itself, with no branch of its own in between."""
    return bool(_pointwise_chain(graph, graph[source].inputs[0]) & _pointwise_chain(graph, feature)) \
        if graph[source].inputs else False


def _kind(graph: Graph, node: Node, pos: int, valued: dict[int, tuple[GateKind, int]]) -> GateKind:
    if valued[node.inputs[pos]][0] is GateKind.BRANCH:
        return GateKind.BRANCH
    gate = graph[node.inputs[pos]]
    if gate.layout is None or all(gate.out_shape[d] == 1 for d in gate.layout):
        return GateKind.CHANNEL
    return GateKind.SPATIAL
