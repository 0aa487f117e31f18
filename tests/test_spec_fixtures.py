"""The hand-written YAML fixtures against their Python twins and the papers' numbers."""

from __future__ import annotations

import pytest
import torch
from conftest import FIXTURES, conv_sequence, fixture_model

import rfalint
import rfalint.spec as spec

CIFAR = (3, 32, 32)

# Same layer names as the twin: the whole graph, the weights and the outputs must match.
TWINS = ["resnet18", "resnet34", "resnet18_cifar", "resnet34_cifar", "se_resnet", "mpnet18",
         "mpnet36", "inception", "mobilenetv2"]
VGGS = ["vgg11", "vgg13", "vgg16", "vgg19"]


def _structure(graph, names: bool = True):
    index = {n.id: i for i, n in enumerate(graph)}
    return [((n.name if names else None), n.op, n.kind,
             [graph[i].name if names else index[i] for i in n.inputs], n.out_shapes, n.geometry)
            for n in graph]


def _rfs(analysis):
    return [None if rf is None else (rf.r_min, rf.r_max) for rf in analysis.rfs]


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _same_outputs(a, b, shape) -> bool:
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", TWINS)
def test_yaml_fixture_is_its_python_twin(name):
    yaml_model = spec.load(FIXTURES / f"{name}.yaml")
    twin = fixture_model(name)
    assert _params(yaml_model) == _params(twin)
    yaml_model.load_state_dict(twin.state_dict())
    ours, theirs = rfalint.analyze(yaml_model, CIFAR), rfalint.analyze(twin, CIFAR)
    assert _structure(ours.graph) == _structure(theirs.graph)
    assert _rfs(ours) == _rfs(theirs)
    assert ours.border.b_min == theirs.border.b_min and ours.border.b_max == theirs.border.b_max
    assert _same_outputs(yaml_model, twin, CIFAR)


@pytest.mark.parametrize("name", VGGS)
def test_yaml_vgg_matches_its_twin_up_to_names(name):
    yaml_model = spec.load(FIXTURES / f"{name}.yaml")
    twin = fixture_model(name)
    assert _params(yaml_model) == _params(twin)
    # Same layers in the same order: the weights transfer by position.
    yaml_model.load_state_dict(dict(zip(yaml_model.state_dict(), twin.state_dict().values())))
    ours, theirs = rfalint.analyze(yaml_model, CIFAR), rfalint.analyze(twin, CIFAR)
    assert _structure(ours.graph, names=False) == _structure(theirs.graph, names=False)
    assert _rfs(ours) == _rfs(theirs)
    assert ours.border.b_min.index == theirs.border.b_min.index
    assert _same_outputs(yaml_model, twin, CIFAR)


def _analyse_yaml(name: str, shape=CIFAR):
    return rfalint.analyze(spec.load(FIXTURES / f"{name}.yaml"), shape)


@pytest.mark.parametrize("name, per_conv, after_pool, border", [
    ("vgg11", [3, 8, 18, 26, 46, 62, 102, 134], 150, 6),
    ("vgg16", [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196], 212, 8),
])
def test_yaml_vgg_reference_values(name, per_conv, after_pool, border):
    analysis = _analyse_yaml(name)
    assert conv_sequence(analysis) == per_conv
    assert analysis.rf_final.r_max == (after_pool, after_pool)
    assert analysis.border.b_min.index == border


def test_yaml_vgg_borders_and_vgg19_final():
    assert [_analyse_yaml(n).border.b_min.index for n in VGGS] == [6, 7, 8, 8]
    vgg19 = _analyse_yaml("vgg19")
    assert conv_sequence(vgg19)[-1] == 252 and vgg19.rf_final.r_max == (268, 268)


def test_yaml_resnet_reference_values():
    resnet18 = _analyse_yaml("resnet18")
    assert conv_sequence(resnet18) == [7, 19, 27, 35, 43, 51, 67, 83, 99, 115, 147, 179, 211,
                                       243, 307, 371, 435]
    assert conv_sequence(resnet18, "r_min") == [7, 19, 27, 19, 27, 19, 35, 27, 43, 27, 59, 43,
                                                75, 43, 107, 75, 139]
    assert (resnet18.border.b_min.index, resnet18.border.b_max.index) == (12, 5)
    resnet34 = _analyse_yaml("resnet34")
    assert resnet34.rf_final.r_max == (899, 899)
    assert (resnet34.border.b_min.index, resnet34.border.b_max.index) == (18, 5)
    for name, final in [("resnet18_cifar", 109), ("resnet34_cifar", 225)]:
        cifar = _analyse_yaml(name)
        assert cifar.rf_final.r_max == (final, final) and cifar.border.b_min is None


def test_yaml_fixtures_check_from_the_cli():
    from clihelp import run

    result = run("check", str(FIXTURES / "vgg16.yaml"), "--res", "32", "--no-cost",
                 "--format", "json")
    assert result.code == 1  # the unproductive tail is an error finding
    assert "stage3.2.conv" in result.out  # findings use the spec's layer names
