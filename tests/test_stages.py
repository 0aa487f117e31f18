"""Stages, units and the Information Field (docs/method.md §6): the IF paper's Tables 1-2,
the organizer's VGG16 rows (Cifar-10, Cifar-100, ImageNet), its ResNet50 and MobileNet
rows, and unit detection."""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn as nn
from rich.console import Console

import rfalint
import rfalint.spec as spec_api
from rfalint.analysis.stages import NoStages, Step, find_stages, information_field, plan_stages
from rfalint.fix.stage_layout import rebalance
from rfalint.report.json_report import to_dict
from rfalint.report.stages import render_stages
from tests.conftest import FIXTURES, fixture_model

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def vgg(cfg):
    return rfalint.load_model(f"{FIXTURES / '_vgg.py'}:VGG", {"cfg": cfg}).model


def vgg_layout(name: str):
    """The IF paper's other VGG16 layouts (fixtures/_vgg.py, outside the fixture globs)."""
    return rfalint.load_model(f"{FIXTURES / '_vgg.py'}:{name}").model


def inserted(stage: int) -> list:
    """VGG11 with a copy of the conv before its ``stage``-th max-pool (the paper's variants)."""
    cfg, pools = list(VGG11), [i for i, v in enumerate(VGG11) if v == "M"]
    at = pools[stage - 1]
    return cfg[:at] + [cfg[at - 1]] + cfg[at:]


def test_table1_if_of_variant3():
    [_, _, third, *_] = find_stages(rfalint.analyze(vgg(inserted(3)), (3, 32, 32)))
    assert (third.w0, third.c0) == ((8, 8), 128)
    assert third.IF == [1152, 3200, 6272]
    # the paper prints 1.17, 0.29 for 1.1659 and 0.2974 (two digits, the last one cut)
    assert third.dIF[0] is None and third.dIF[1:] == pytest.approx([1.1659, 0.2974], abs=1e-4)


def test_table2_dif_of_each_inserted_layer():
    gains = []
    for stage in range(1, 6):
        stages = find_stages(rfalint.analyze(vgg(inserted(stage)), (3, 32, 32)))
        gains.append(stages[stage - 1].dIF[-1])
    assert gains == pytest.approx([1.73, 1.60, 0.29, 0.0, 0.0], abs=0.01)


def test_if_is_per_axis_and_depthwise_keeps_the_channels():
    standard, depthwise = Step((3, 3)), Step((3, 3), "depthwise")
    assert information_field((8, 8), 4, [[standard], [depthwise]])[0] == [36, 100]
    assert information_field((8, 8), 4, [[depthwise], [standard]])[0] == [9, 100]
    assert information_field((8,), 4, [[Step((3,))], [Step((3,))]])[0] == [12, 20]  # d = 1
    assert information_field((8, 4), 2, [[standard], [standard], [standard]])[0] == \
        [18, 40, 56]  # IF_w = (7, 4): min() per axis


@pytest.fixture(scope="module")
def vgg16_rebalanced():
    model = fixture_model("vgg16")
    analysis = rfalint.analyze(model, (3, 32, 32), "vgg16")
    return model, rebalance(analysis, spec_api.parse(spec_api.from_graph(analysis.graph, "vgg16")))


def _params(doc) -> int:
    with torch.device("meta"):  # shapes only: no memory for the weights
        return sum(p.numel() for p in spec_api.build(doc).parameters())


def test_organizer_vgg16_cifar10(vgg16_rebalanced):
    _, (rewrite, plan, stages) = vgg16_rebalanced
    assert plan.counts_before == [2, 2, 3, 3, 3] and plan.counts_after == [5, 4, 2, 1, 1]
    assert [(m.source, m.target) for m in plan.moves] == [(5, 1), (5, 2), (4, 1), (4, 1), (3, 2)]
    assert _params(rewrite.document) == 5_101_194  # Table 3: 5.10 M (baseline 14.73 M)
    assert [s.width for s in stages] == [64, 128, 256, 512, 512]


def test_organizer_vgg16_cifar100_and_imagenet():
    with torch.device("meta"):  # only the geometry and the parameter count are needed
        model = vgg_layout("vgg16_cifar100")
    analysis = rfalint.analyze(model, (3, 32, 32))
    rewrite, plan, _ = rebalance(analysis, spec_api.parse(spec_api.from_graph(analysis.graph)))
    assert plan.counts_after == [5, 4, 2, 1, 1]
    assert _params(rewrite.document) == 24_388_324  # Table 4: 24.39 M
    with torch.device("meta"):
        model = vgg_layout("vgg16_imagenet")
    analysis = rfalint.analyze(model, (3, 224, 224))
    rewrite, plan, _ = rebalance(analysis, spec_api.parse(spec_api.from_graph(analysis.graph)))
    assert plan.counts_after == [3, 3, 3, 2, 2]
    assert _params(rewrite.document) == 133_822_440  # Table 5: 133.82 M


def _organized(name: str, shape: tuple[int, ...], **kwargs):
    """The organizer's plan for a fixture and the rewritten net's parameter count."""
    with torch.device("meta"):  # only the geometry and the parameter count are needed
        model = fixture_model(name, **kwargs)
    analysis = rfalint.analyze(model, shape)
    rewrite, plan, _ = rebalance(analysis, spec_api.parse(spec_api.from_graph(analysis.graph)))
    return plan, _params(rewrite.document)


def test_organizer_resnet50_cifar10_and_imagenet():
    plan, params = _organized("resnet50", (3, 32, 32), num_classes=10, stem="cifar")
    assert plan.counts_before == [3, 4, 6, 3] and plan.counts_after == [5, 5, 4, 2]
    # "the last two blocks from the third stage to the first stage and the last block
    # from the last stage to the second stage"
    assert [(m.source, m.target) for m in plan.moves] == [(3, 1), (3, 1), (4, 2)]
    assert params == 17_244_746  # Table 3: 17.24 M (baseline 23.52 M)
    plan, params = _organized("resnet50", (3, 224, 224))
    assert plan.counts_after == [4, 5, 4, 3]
    assert [(m.source, m.target) for m in plan.moves] == [(3, 1), (3, 2)]
    assert params == 23_673_128  # Table 5: 23.67 M (baseline 25.56 M)


def test_organizer_mobilenet_imagenet_and_with_the_imagenet_stem_at_32_px():
    plan, params = _organized("mobilenet_cifar", (3, 224, 224), num_classes=1000,
                              stem_stride=2)
    assert plan.counts_before == [1, 2, 2, 6, 2] and plan.counts_after == [2, 3, 3, 3, 2]
    assert params == 3_517_416  # Table 5: 3.52 M (baseline 4.23 M)
    # Table 3's row (1.13 M, "four from the fourth stage and one from the last stage" to
    # the first and second) is what the stride-2 stem gives at 32 px (stage inputs 16, 8,
    # 4, 2, 1); the Cifar stem (stride 1) gives [3, 3, 3, 2, 2] (test_stage_fix.py).
    plan, params = _organized("mobilenet_cifar", (3, 32, 32), stem_stride=2)
    assert plan.counts_after == [4, 4, 2, 2, 1]
    assert [(m.source, m.target) for m in plan.moves] == [(5, 1), (4, 2), (4, 1), (4, 1),
                                                          (4, 2)]
    assert all(m.dif_source == 0 for m in plan.moves)
    assert params == 1_131_018  # Table 3: 1.13 M (baseline 3.22 M)


def test_theta_stops_the_organizer_earlier():
    stages = find_stages(rfalint.analyze(fixture_model("vgg16"), (3, 32, 32)))
    plan = plan_stages(stages, theta=0.5)
    assert plan.counts_after == [4, 3, 2, 1, 1]  # 3 moves, then 2 removals (gains <= 0.5)
    assert [m.target for m in plan.moves] == [1, 2, 1, None, None]
    assert plan_stages(stages, theta=10).moves[0].target is None  # nothing gains: remove


def test_units_are_found_from_the_graph():
    resnet = find_stages(rfalint.analyze(fixture_model("resnet18", width=8), (3, 64, 64)))
    assert [len(s.units) for s in resnet] == [2, 2, 2, 2]
    assert {u.kind for s in resnet for u in s.units} == {"residual"}
    assert [len(u.convs) for u in resnet[1].units] == [2, 2]  # shortcut convs are off the path
    mobile = find_stages(rfalint.analyze(fixture_model("mobilenet_cifar"), (3, 32, 32)))
    assert [len(s.units) for s in mobile] == [1, 2, 2, 6, 2]  # the stem conv is no unit
    assert {u.kind for s in mobile for u in s.units} == {"separable"}
    v2 = find_stages(rfalint.analyze(fixture_model("mobilenetv2"), (3, 32, 32)))
    kinds = [u.kind for u in v2[1].units]
    assert kinds == ["separable", "residual"]  # expand-dw-project without, then with skip


def test_no_stages_without_downsampling_or_in_a_decoder():
    flat = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    with pytest.raises(NoStages, match="no downsampling"):
        find_stages(rfalint.analyze(flat, (3, 16, 16)))
    with pytest.raises(NoStages, match="upsamples"):
        find_stages(rfalint.analyze(fixture_model("unet"), (3, 32, 32)))


def test_check_stages_text_and_json():
    result = rfalint.check(fixture_model("vgg11"), (3, 32, 32), "vgg11", cost=False)
    out = io.StringIO()
    render_stages(result.analysis, Console(file=out, width=160))
    assert "units per stage [1, 1, 2, 2, 2]" in out.getvalue()
    data = json.loads(json.dumps(to_dict(result)))
    third = data["stages"][2]
    assert (third["w0"], third["c0"]) == ([8, 8], 128)
    assert [u["IF"] for u in third["units"]] == [1152, 3200]
    assert third["units"][0]["convs"] == ["features.8"] and data["stages_note"] is None
