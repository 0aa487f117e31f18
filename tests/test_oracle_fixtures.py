"""rfalint against the independent gradient-support oracle on every fixture.

For each fixture, the conv layers of the main path whose r_max fits a modest input are
probed: the oracle's support extent of their centre output unit must equal rfalint's
r_max exactly. Gates (SE, CBAM) put a global pool on every later path, which the oracle
sees and rfalint by convention excludes, so only layers before the first gate count.
"""

from __future__ import annotations

import glob
import os

import pytest
import torch

import rfalint
from oracle import gradient_support_many

from conftest import FIXTURES, fixture_model

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_R = 96  # probe layers whose RF fits; inputs stay small enough for float64 on CPU
SHAPES = {"audio1d": (1, 1), "video3d": (3, 1, 1, 1)}
SMALL = {"resnet": {"width": 8}, "mpnet": {"width": 8}, "densenet": {"growth_rate": 8},
         "unet": {"width": 4}, "cbam_net": {"width": 8}, "nonsquare": {"width": 8},
         "audio1d": {"width": 8}, "video3d": {"width": 4}}
NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(str(FIXTURES / "[a-z]*.py")))


def small_kwargs(name: str) -> dict:
    return next((kw for prefix, kw in SMALL.items() if name.startswith(prefix)), {})


def probe_layers(analysis) -> list:
    graph = analysis.graph
    first_gate = min((n.id for n in graph if n.gates), default=len(graph))
    layers = [graph[layer.node] for layer in analysis.border.sequence
              if layer.node < first_gate and graph[layer.node].module is not None
              and "@" not in graph[layer.node].name
              and max(analysis.rfs[layer.node].r_max) <= MAX_R]
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
    layers = probe_layers(analysis)
    assert layers, "no layer to probe"
    r_max = {n.name: analysis.rfs[n.id].r_max for n in layers}
    size = [2 * max(r[a] for r in r_max.values()) + 16 for a in range(ndim)]
    size = [-(-s // 32) * 32 for s in size]  # U-Net style nets need divisible sizes
    supports = gradient_support_many(model, (channels, *size), list(r_max))
    for layer_name, expected in r_max.items():
        support = supports[layer_name]
        assert not support.clipped, (layer_name, support)
        assert support.extent == expected, (layer_name, support.extent, expected)
