"""Activation memory: per-node bytes equal the real tensors', and the peak follows the
convention of docs/method.md §5 (hand-computed here)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from conftest import fixture_model

import rfalint
from rfalint.report import render_text, to_dict, to_json
from rfalint.analysis.memory import activation_memory
from rfalint.capture import capture


def _chain(inplace: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.Conv2d(4, 2, 3, padding=1), nn.Flatten())


@pytest.mark.parametrize("inplace, peak, peak_at", [
    # input 3x8x8 = 768 B, conv 4x8x8 = 1024 B, conv 2x8x8 = 512 B, flatten a view.
    # in-place ReLU: the peak is the first conv (input 768 + its output 1024).
    (True, 768 + 1024, "0"),
    # A new ReLU output: conv output and ReLU output live together (the input is freed
    # after the first conv, its last consumer).
    (False, 1024 + 1024, "1"),
])
def test_hand_computed_peak(inplace, peak, peak_at):
    graph = capture(_chain(inplace), (3, 8, 8))
    memory = activation_memory(graph)
    assert memory.bytes == [768, 1024, 1024, 512, 512]
    assert memory.allocated == [768, 1024, 0 if inplace else 1024, 512, 0]
    assert (memory.peak, graph[memory.peak_node].name) == (peak, peak_at)


class _Skip(nn.Module):
    """x lives until the add: conv a and conv b run while it is held."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        y = self.b(self.a(x))
        x = x + y
        return x


def test_skip_connection_keeps_its_input_alive():
    graph = capture(_Skip(), (2, 4, 4))  # every tensor 2x4x4 float32 = 128 B
    memory = activation_memory(graph)
    # At b: x (to the add), a's output (b's input) and b's output: 3 x 128.
    # At the add: x, b's output and the add's own output: 3 x 128 (a's output is freed).
    assert memory.peak == 3 * 128 and graph[memory.peak_node].name == "b"
    # In place (x += y) the add allocates nothing: its peak is at b as well, and so is 384.
    assert memory.allocated[-1] == 128


def _real_output_bytes(model: nn.Module, shape) -> dict[str, int]:
    """numel * element_size of every leaf module's output on a real forward."""
    sizes: dict[str, int] = {}

    def record(name):
        def hook(module, args, out):
            sizes.setdefault(name, out.numel() * out.element_size())
        return hook

    handles = [m.register_forward_hook(record(name))
               for name, m in model.named_modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(torch.zeros((1, *shape), dtype=next(model.parameters()).dtype))
    for handle in handles:
        handle.remove()
    return sizes


@pytest.mark.parametrize("name, shape", [
    ("resnet18", (3, 32, 32)), ("unet", (3, 32, 32)), ("tiny_fpn", (3, 64, 64))])
def test_bytes_equal_real_tensor_sizes(name, shape):
    model = fixture_model(name)
    result = rfalint.check(model, shape, counter="rfalint-graph")
    graph = result.analysis.graph
    assert result.memory.dtype == torch.float32
    # Capture runs in float32; the same graph priced in float64 must match a real float64
    # forward, which doubles every tensor.
    for dtype, memory in ((torch.float32, result.memory),
                          (torch.float64, activation_memory(graph, torch.float64))):
        real = _real_output_bytes(model.to(dtype), shape)
        compared = 0
        for node in graph:
            if node.module is not None and node.name in real:
                assert memory.bytes[node.id] == real[node.name], (dtype, node.name)
                compared += 1
        assert compared > 10
    model.float()
    data = json.loads(to_json(result))
    summary = data["summary"]["activation_memory"]
    assert summary["peak_bytes"] == result.memory.peak and summary["batch"] == 1
    assert summary["dtype"] == "float32"
    assert [layer["activation_bytes"] for layer in data["layers"]] == result.memory.bytes[1:]


def test_tail_share_in_text_report():
    result = rfalint.check(fixture_model("resnet18"), (3, 32, 32), counter="rfalint-graph")
    held, fraction = result.memory.share(result.analysis.border.tail)
    assert 0 < fraction < 1 and held == sum(result.memory.allocated[i]
                                            for i in result.analysis.border.tail)
    from rich.console import Console

    console = Console(record=True, width=200)
    render_text(result, console)
    text = console.export_text()
    assert "activation memory (batch 1, float32): peak 128.00 KiB" in text
    assert f"({fraction:.1%}) of the activation memory" in text
