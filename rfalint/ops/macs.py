"""Multiply-accumulates of one captured node, from its arguments and shapes alone.

These are the graph counter's formulas (rfalint.analysis.cost): no forward runs. Each
takes the node (``call_args``, ``out_shape``) and the shapes of its graph inputs. MACs,
not FLOPs: one multiply-accumulate is one MAC.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rfalint.graph import Node

Shape = tuple[int, ...]


def conv_args(node: "Node") -> tuple[tuple[int, ...], int]:
    """Kernel size and groups as capture recorded them (module attributes, or a functional
    call's arguments with the kernel size read off its weight); an int kernel size of a
    registered module is one size per spatial axis."""
    kernel = node.call_args["kernel_size"]
    if isinstance(kernel, int):
        kernel = (kernel,) * len(node.spatial_out)
    return tuple(kernel), int(node.call_args.get("groups", 1))


def conv(node: "Node", inputs: list[Shape]) -> int:
    """out positions x out channels x (in channels / groups) x kernel volume."""
    kernel, groups = conv_args(node)
    c_in = inputs[0][-len(kernel) - 1]
    return math.prod(node.out_shape) * (c_in // groups) * math.prod(kernel)


def conv_transpose(node: "Node", inputs: list[Shape]) -> int:
    """Each input value is scattered to (out channels / groups) x kernel volume outputs."""
    kernel, groups = conv_args(node)
    c_out = node.out_shape[-len(kernel) - 1]
    return math.prod(inputs[0]) * (c_out // groups) * math.prod(kernel)


def linear(node: "Node", inputs: list[Shape]) -> int:
    return math.prod(node.out_shape) * inputs[0][-1]


def matmul(node: "Node", inputs: list[Shape]) -> int:
    """out elements x contracted size. With one operand from the graph (``x @ W`` or
    ``W @ x``) its side is read from the output shape; the left side wins a tie."""
    out, x = node.out_shape, inputs[0]
    if len(inputs) == 1 and len(x) >= 2 and len(out) >= 2 and out[-2] != x[-2] \
            and out[-1] == x[-1]:
        return math.prod(out) * x[-2]
    return math.prod(out) * x[-1]
