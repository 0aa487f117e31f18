"""rfalint against the independent gradient-support oracle on every fixture.

For each fixture, the conv layers of the main path whose r_max fits a modest input are
probed: the oracle's support extent of their centre output unit must equal rfalint's
r_max exactly. Gated fixtures (SE, CBAM, BAM, SK, split attention, attention U-Net) are
probed on all their main-path layers too: the oracle detaches every sigmoid and softmax
output, which excludes gates the way rfalint does by default (docs/method.md §3).
"""

from __future__ import annotations

import pytest
import torch

import rfalint
from oracle import gradient_support_many

from conftest import FIXTURE_NAMES as NAMES
from conftest import fixture_model, small_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")

# probe layers whose RF fits; inputs stay small enough for float64 on CPU
MAX_R = {1: 96, 2: 96, 3: 24}
SHAPES = {"audio1d": (1, 1), "video3d": (3, 1, 1, 1), "unet3d_medical": (1, 1, 1, 1)}
def probe_layers(analysis, max_r: int) -> list[tuple[str, int]]:
    """(module name, node id) of main-path convs to measure. A functional conv (a "same"-
    padding conv subclass calling ``F.conv2d``) is measured at its module when it is the
    last op recorded in that module's scope, i.e. its output is the module's output."""
    graph = analysis.graph
    last_in_scope = {n.scope: n.id for n in graph}
    layers = []
    for layer in analysis.border.sequence:
        node = graph[layer.node]
        if "@" in node.name or max(analysis.rfs[node.id].r_max) > max_r:
            continue
        if node.module is not None:
            layers.append((node.name, node.id))
        elif node.scope and last_in_scope[node.scope] == node.id:
            layers.append((node.scope, node.id))
    step = max(1, len(layers) // 6)
    return layers[::step][:8]


@pytest.mark.parametrize("name", NAMES)
def test_engine_matches_gradient_support(name):
    torch.manual_seed(0)
    model = fixture_model(name, **small_kwargs(name))
    channels, *dims = SHAPES.get(name, (3, 1, 1))
    ndim = len(dims)
    # RFs do not depend on the input size: analyse once, then size the oracle's input.
    shape = (channels, *{1: [4000], 2: [64, 64], 3: [16, 32, 32]}[ndim])
    if name.startswith("vgg"):
        shape = (channels, 32, 32)
    analysis = rfalint.analyze(model, shape)
    layers = probe_layers(analysis, MAX_R[ndim])
    assert layers, "no layer to probe"
    r_max = {name: analysis.rfs[node].r_max for name, node in layers}
    size = [2 * max(r[a] for r in r_max.values()) + 16 for a in range(ndim)]
    size = [-(-s // 32) * 32 for s in size]  # U-Net style nets need divisible sizes
    supports = gradient_support_many(model, (channels, *size), list(r_max))
    for layer_name, expected in r_max.items():
        support = supports[layer_name]
        assert not support.clipped, (layer_name, support)
        assert support.extent == expected, (layer_name, support.extent, expected)
