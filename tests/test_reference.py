"""Reference values from docs/method.md §9 (the papers), reproduced exactly."""

from __future__ import annotations

import pytest

from conftest import analyse_fixture, conv_sequence

CIFAR = (3, 32, 32)


@pytest.mark.parametrize("name, expected, after_pool", [
    ("vgg11", [3, 8, 18, 26, 46, 62, 102, 134], 150),
    ("vgg16", [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196], 212),
])
def test_vgg_per_conv_rf(name, expected, after_pool):
    analysis = analyse_fixture(name, CIFAR)
    assert conv_sequence(analysis) == expected
    assert conv_sequence(analysis, "r_min") == expected  # sequential: one path
    assert analysis.rf_final.r_max == (after_pool, after_pool)


def test_vgg19_final_rf():
    analysis = analyse_fixture("vgg19", CIFAR)
    assert conv_sequence(analysis)[-1] == 252
    assert analysis.rf_final.r_max == (268, 268)


@pytest.mark.parametrize("name, border", [
    ("vgg11", 6), ("vgg13", 7), ("vgg16", 8), ("vgg19", 8), ("vgg19_dilated", 5),
    ("resnet18_noskip", 5),
])
def test_sequential_border_layer(name, border):
    analysis = analyse_fixture(name, CIFAR)
    assert analysis.border.b_min.index == border
    assert analysis.border.b_max.index == border  # one path: b_min == b_max


def test_vgg16_border_message_numbers():
    analysis = analyse_fixture("vgg16", CIFAR)
    b = analysis.border.b_min
    assert b.r_in_min == (44, 44)  # conv 7 gives 40, the 2x2/2 pool after it 44
    tail_convs = [analysis.graph[t].name for t in analysis.border.tail
                  if analysis.graph[t].kind.value == "conv"]
    assert len(tail_convs) == 6


RESNET18_RMAX = [7, 19, 27, 35, 43, 51, 67, 83, 99, 115, 147, 179, 211, 243, 307, 371, 435]
RESNET18_RMIN = [7, 19, 27, 19, 27, 19, 35, 27, 43, 27, 59, 43, 75, 43, 107, 75, 139]


def test_resnet18_rf_sequences():
    analysis = analyse_fixture("resnet18", CIFAR, num_classes=10)
    assert conv_sequence(analysis) == RESNET18_RMAX
    assert conv_sequence(analysis, "r_min") == RESNET18_RMIN
    assert analysis.rf_final.r_max == (435, 435)


def test_resnet18_main_path_excludes_shortcuts():
    analysis = analyse_fixture("resnet18", CIFAR, num_classes=10)
    names = [analysis.graph[layer.node].name for layer in analysis.border.sequence]
    assert names[0] == "conv1"
    assert not any("downsample" in n for n in names)
    assert names[-1] == "layer4.1.conv2"


@pytest.mark.parametrize("name, b_min, b_max, final", [
    ("resnet18", 12, 5, 435),
    ("resnet34", 18, 5, 899),
])
def test_resnet_borders(name, b_min, b_max, final):
    # The paper plots b_min 11 / 17; its literal definition (r_min of the previous
    # sequence layer > I, and so for all later ones) gives 12 / 18, which we implement.
    analysis = analyse_fixture(name, CIFAR, num_classes=10)
    assert analysis.border.b_min.index == b_min
    assert analysis.border.b_max.index == b_max
    assert analysis.rf_final.r_max == (final, final)


def test_resnet18_rf_independent_of_resolution():
    small = analyse_fixture("resnet18", CIFAR, num_classes=10)
    large = analyse_fixture("resnet18", (3, 224, 224), num_classes=10)
    assert small.rf_final.r_max == large.rf_final.r_max == (435, 435)
    assert large.border.b_min is None


@pytest.mark.parametrize("name, final", [("resnet18_cifar", 109), ("resnet34_cifar", 225)])
def test_cifar_stem_has_no_border_at_32(name, final):
    analysis = analyse_fixture(name, CIFAR)
    assert analysis.rf_final.r_max == (final, final)
    assert analysis.border.b_min is None
    assert analysis.border.tail == []


def test_resnet18_critical_layers_between_borders():
    analysis = analyse_fixture("resnet18", CIFAR, num_classes=10)
    status = {layer.index: analysis.border.status[layer.node] for layer in analysis.border.sequence}
    assert [i for i, s in status.items() if s == "critical"] == list(range(5, 12))
    assert [i for i, s in status.items() if s == "unproductive"] == list(range(12, 18))
