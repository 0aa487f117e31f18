"""rfalint against the independent gradient-support oracle on every fixture.

For each fixture, the conv layers of the main path whose r_max fits a modest input are
probed: the oracle's support extent of their centre output unit must equal rfalint's
r_max exactly, the support must be rfalint's region of that unit (rf_region, docs/method.md
§4), which fixes the effective padding P, and unit 0's support must be its region clipped
to the image. Gated fixtures (SE, CBAM, BAM, SK, split attention, attention U-Net) are
probed on all their main-path layers too: the oracle detaches every sigmoid and softmax
output, which excludes gates the way rfalint does by default (docs/method.md §3).
"""

from __future__ import annotations

import pytest
import torch

import rfalint
from oracle import gradient_supports_at

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
    corner = (0,) * ndim
    supports = gradient_supports_at(model, (channels, *size), list(r_max), ["centre", corner])
    for module_name, node_id in layers:
        (middle, centre), (_, first) = supports[module_name]
        assert not centre.clipped, (module_name, centre)
        assert centre.extent == r_max[module_name], (module_name, centre.extent,
                                                      r_max[module_name])
        # Regions are the same at any input size (rf_region checks units against the
        # analysed map, which has another size here, so ask the RF directly).
        rf = analysis.rfs[node_id]
        assert rf.region_of(middle) == tuple(zip(centre.lo, centre.hi)), module_name
        if all(a.pieces[0].period == 1 for a in rf.region):  # one phase: lo = u*S - P
            assert rf.eff_padding == tuple(u * j - lo for u, j, lo in
                                           zip(middle, rf.jump, centre.lo)), module_name
        region = rf.region_of(corner)
        assert first.lo == tuple(max(0, lo) for lo, _ in region), module_name
        assert first.hi == tuple(min(n - 1, hi) for (_, hi), n in zip(region, size)), module_name
