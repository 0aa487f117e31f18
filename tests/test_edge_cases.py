"""Edge cases (docs/method.md §9): the correct value, never what a naive tool prints."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import rfalint


def rf_of(model, shape, attr="r_max"):
    """RF of every conv/pool/resample/merge node, by name."""
    analysis = rfalint.analyze(model, shape)
    return {n.name: getattr(analysis.rfs[n.id], attr) for n in analysis.graph
            if n.id and analysis.rfs[n.id] is not None}


def test_dilated_conv_then_conv():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding=2), nn.Conv2d(1, 1, 3, padding=1))
    rf = rf_of(net, (1, 32, 32))
    assert rf["0"] == (5, 5) and rf["1"] == (7, 7)


def test_transposed_conv_divides_the_jump():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ConvTranspose2d(1, 1, 2, stride=2),
                        nn.Conv2d(1, 1, 3, padding=1))
    rf = rf_of(net, (1, 32, 32))
    assert (rf["0"], rf["1"], rf["2"]) == ((3, 3), (3, 3), (5, 5))


def test_upsample_divides_the_jump():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Upsample(scale_factor=2),
                        nn.Conv2d(1, 1, 3, padding=1))
    rf = rf_of(net, (1, 32, 32))
    assert (rf["0"], rf["1"], rf["2"]) == ((3, 3), (3, 3), (5, 5))


def test_bilinear_upsample_reads_two_inputs():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1),
                        nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(1, 1, 3, padding=1))
    rf = rf_of(net, (1, 32, 32))
    assert (rf["1"], rf["2"]) == ((5, 5), (7, 7))


class InceptionMerge(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(4, 4, 1)
        self.b3 = nn.Conv2d(4, 4, 3, padding=1)
        self.b5 = nn.Conv2d(4, 4, 5, padding=2)
        self.post = nn.Conv2d(12, 4, 3, padding=1)

    def forward(self, x):
        return self.post(torch.cat([self.b1(x), self.b3(x), self.b5(x)], 1))


def test_inception_merge_min_and_max():
    net = InceptionMerge()
    r_max, r_min = rf_of(net, (4, 32, 32)), rf_of(net, (4, 32, 32), "r_min")
    assert (r_min["cat"], r_max["cat"]) == ((1, 1), (5, 5))
    assert (r_min["post"], r_max["post"]) == ((3, 3), (7, 7))


def test_factorised_kernels_are_per_axis():
    net = nn.Sequential(nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1), padding=(3, 0)))
    rf = rf_of(net, (1, 32, 32))
    assert rf["0"] == (1, 7) and rf["1"] == (7, 7)


def test_conv1d():
    net = nn.Sequential(nn.Conv1d(1, 1, 5, padding=2), nn.Conv1d(1, 1, 5, padding=2))
    rf = rf_of(net, (1, 64))
    assert rf["0"] == (5,) and rf["1"] == (9,)


def test_conv3d_non_cubic():
    net = nn.Sequential(nn.Conv3d(1, 1, (3, 1, 1), padding=(1, 0, 0)), nn.Conv3d(1, 1, (1, 3, 3)),
                        nn.MaxPool3d((1, 2, 2)), nn.Conv3d(1, 1, 3))
    rf = rf_of(net, (1, 8, 16, 16))
    assert rf["0"] == (3, 1, 1) and rf["1"] == (3, 3, 3)
    assert rf["2"] == (3, 4, 4) and rf["3"] == (5, 8, 8)


class Functional(nn.Module):
    """The functional forms must match the module forms."""

    def __init__(self):
        super().__init__()
        self.w3 = nn.Parameter(torch.ones(4, 4, 3, 3))
        self.w5 = nn.Parameter(torch.ones(4, 4, 5, 5))

    def forward(self, x):
        a = F.conv2d(x, self.w3, padding=1)
        a = F.max_pool2d(a, 2)
        b = F.conv2d(x, self.w5, padding=2, stride=2)
        y = a + b
        z = torch.cat([y, a], dim=1)
        return F.interpolate(z, scale_factor=2)


def test_functional_forms():
    analysis = rfalint.analyze(Functional(), (4, 32, 32))
    by_name = {n.name: n for n in analysis.graph}
    assert by_name["conv2d"].op == "conv2d" and by_name["max_pool2d"].op == "max_pool2d"
    rf = {n.name: (analysis.rfs[n.id].r_min, analysis.rfs[n.id].r_max) for n in analysis.graph
          if analysis.rfs[n.id] is not None}
    assert rf["conv2d"] == ((3, 3), (3, 3))
    assert rf["max_pool2d"] == ((4, 4), (4, 4))
    assert rf["conv2d_1"] == ((5, 5), (5, 5))
    assert rf["add"] == ((4, 4), (5, 5))
    assert rf["cat"] == ((4, 4), (5, 5))
    assert rf["interpolate"] == ((4, 4), (5, 5))
    jumps = analysis.rfs[by_name["interpolate"].id].jump
    assert jumps == (1, 1)


def test_rf_is_not_clipped_to_the_input():
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(10)])
    assert rf_of(net, (1, 4, 4))["9"] == (21, 21)


def test_pareto_front_keeps_states_with_different_jumps():
    """Paths (r 3, j 2) and (r 5, j 1) on the same grid: (r 5) is larger now, but through a
    5-tap layer the larger jump wins: 3 + 4 * 2 = 11 > 5 + 4 = 9. Keeping only the larger
    r before the layer would give 9.
    """
    from fractions import Fraction as Fr

    from rfalint.analysis.rf import AxisFronts
    from rfalint.graph import Transfer

    a = AxisFronts(((3, 0, 2, 1),), ((3, 0, 2, 1),))  # (base, extra, jump, grid)
    b = AxisFronts(((5, 0, 1, 1),), ((5, 0, 1, 1),))
    merged = AxisFronts.union([a, b])
    assert len(merged.upper) == 2 and merged.r_max == 5 and merged.r_min == 3
    after = merged.through(Transfer(5, Fr(1)))
    assert after.r_max == 11 and after.r_min == 9


def test_pareto_front_drops_dominated_states():
    from rfalint.analysis.rf import AxisFronts

    states = [(r, 0, j, 1) for r, j in ((3, 2), (5, 2), (4, 1), (7, 4))]
    merged = AxisFronts.union([AxisFronts((p,), (p,)) for p in states])
    assert merged.upper == ((7, 0, 4, 1),)
    assert set(merged.lower) == {(3, 0, 2, 1), (4, 0, 1, 1)}


def test_windows_after_upsampling_accumulate_before_rounding():
    """nearest x2 then two 2/1 pools: three neighbouring fine units straddle at most two
    sources, so r is 2; rounding each pool up separately would give 3."""
    net = nn.Sequential(nn.Upsample(scale_factor=2), nn.MaxPool1d(2, 1), nn.MaxPool1d(2, 1))
    assert rf_of(net, (1, 32))["2"] == (2,)


def test_even_window_after_upsampling_is_the_worst_phase():
    """pool 2/2 -> nearest x2 -> pool 2/1: neighbouring upsampled units can come from two
    different pooled units, so a 2-window reads 4 input pixels, not 2 + 1 * 1 = 3."""
    net = nn.Sequential(nn.MaxPool1d(2, 2), nn.Upsample(scale_factor=2), nn.MaxPool1d(2, 1))
    assert rf_of(net, (1, 32))["2"] == (4,)
