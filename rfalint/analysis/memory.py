"""Activation memory of one forward pass at batch 1 (docs/method.md §5).

Memory footprint is a design criterion next to parameters and compute: it is set by the
size of the feature maps. Every node's output takes ``numel * element_size`` bytes, in the
model's dtype (its first floating-point parameter, else float32), at batch 1.

The peak is the most memory live at once while the nodes run in execution order, under
this convention:

* a tensor is live from the node that produces it until its last consumer has run; the
  graph's outputs stay live until the end, and the input is live from the start;
* while a node runs, its inputs and its output are live together;
* an in-place op or a view (``Node.aliases``) allocates nothing: it extends the life of
  the storage it shares instead;
* parameters, gradients and the allocator's workspace are not activations and are not
  counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn

from rfalint.graph import Graph


@dataclass(frozen=True)
class Memory:
    """Bytes per node output, the live peak and what holds it."""

    bytes: list[int]  # per node id: its outputs' size, also for views and in-place ops
    allocated: list[int]  # per node id: what it allocates (0 for views and in-place ops)
    peak: int  # bytes live at once, at most, in execution order
    peak_node: int  # the node running when the peak is reached
    dtype: torch.dtype

    @property
    def total(self) -> int:
        """Sum of all allocations: what a forward that kept every activation would hold."""
        return sum(self.allocated)

    def share(self, node_ids: Iterable[int]) -> tuple[int, float]:
        """Bytes the nodes allocate, and their fraction of :attr:`total`."""
        held = sum(self.allocated[i] for i in set(node_ids))
        return held, held / self.total if self.total else 0.0


def model_dtype(model: nn.Module | None) -> torch.dtype:
    param = None if model is None else next(
        (p for p in model.parameters() if p.is_floating_point()), None)
    return param.dtype if param is not None else torch.float32


def activation_memory(graph: Graph, dtype: torch.dtype = torch.float32) -> Memory:
    """Per-node output bytes and the peak live activation memory of ``graph``."""
    size = torch.empty((), dtype=dtype).element_size()
    out_bytes = [sum(math.prod(shape) for shape in node.out_shapes) * size for node in graph]
    storage = list(range(len(graph)))  # node id -> the node whose allocation it uses
    for node in graph:
        if node.aliases and node.inputs:
            storage[node.id] = storage[node.inputs[0]]
    allocated = [0 if storage[n.id] != n.id else out_bytes[n.id] for n in graph]
    end = len(graph) - 1
    last_use = list(range(len(graph)))
    for node in graph:
        for src in node.inputs:
            last_use[storage[src]] = max(last_use[storage[src]], node.id)
        last_use[storage[node.id]] = max(last_use[storage[node.id]], node.id)
    for out in graph.outputs:
        last_use[storage[out]] = end
    # Sweep: +bytes when a storage is allocated, -bytes after its last use.
    delta = [0] * (len(graph) + 1)
    for node_id, held in enumerate(allocated):
        if held:
            delta[node_id] += held
            delta[last_use[node_id] + 1] -= held
    live, peak, peak_node = 0, 0, 0
    for node_id in range(len(graph)):
        live += delta[node_id]
        if live > peak:
            peak, peak_node = live, node_id
    return Memory(out_bytes, allocated, peak, peak_node, dtype)


def fmt_bytes(value: int) -> str:
    """Binary units, as memory is sold: 1 MiB = 2**20 bytes."""
    for scale, unit in ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} B"
