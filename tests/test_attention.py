"""Attention and gating fixtures: gates recognised by what they compute and excluded from
the RF by default, stacked/split branches kept as feature paths, completeness
(docs/method.md §3). Expected values are derived by hand in each fixture's docstring and
checked against the gradient oracle, which detaches gates the same way, where that is
cheap."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import rfalint
from oracle import gradient_support
from rfalint.capture.gates import GateKind

from conftest import fixture_model, small_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")

# fixture, factory kwargs (beyond the small widths), final r_max at 224 px, gates by kind
EXPECTED = {
    "cbam_resnet18": ({}, 435, {GateKind.CHANNEL: 8, GateKind.SPATIAL: 8}),
    "bam_resnet18": ({}, 435, {GateKind.SPATIAL: 3}),
    "sk_resnet": ({"width": 4}, 843, {GateKind.BRANCH: 16}),
    "resnest": ({"width": 4}, 495, {GateKind.BRANCH: 32}),  # one per split of every block (radix 2)
    "attention_unet": ({}, 100, {GateKind.SPATIAL: 3}),
    "stack_fusion": ({"fusion": "softmax"}, 103, {}),  # weights of a parameter: no gate
    "stack_fusion-mean": ({"fusion": "mean"}, 103, {}),
}


def build(key: str) -> nn.Module:
    name = key.split("-")[0]
    return fixture_model(name, **{**small_kwargs(name), **EXPECTED[key][0]})


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def checked(request):
    key = request.param
    return key, rfalint.check(build(key), (3, 224, 224), cost=False)


def test_final_rf_is_the_hand_derived_value(checked):
    key, result = checked
    assert result.analysis.rf_final.r_max == (EXPECTED[key][1],) * 2
    assert result.analysis.complete
    assert "RFA201" not in [f.code for f in result.findings]


def test_each_gate_reported_once_with_its_kind(checked):
    key, result = checked
    gate_findings = [f for f in result.findings if f.code == "RFA202"]
    layers = [f.layer for f in gate_findings]
    assert len(layers) == len(set(layers))
    counts: dict = {}
    for kind in result.analysis.graph.gate_kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    assert counts == EXPECTED[key][2]
    assert len(gate_findings) == sum(counts.values())
    for finding in gate_findings:
        node = result.analysis.graph.by_name(finding.layer)
        kind = result.analysis.graph.gate_kinds[node.id]
        assert finding.message.startswith(f"{kind.value} gate ")


def feature_nodes(graph) -> set[int]:
    """Nodes that reach a model output along feature operands (not through a gate)."""
    seen, todo = set(), list(graph.outputs)
    while todo:
        node = graph[todo.pop()]
        if node.id not in seen:
            seen.add(node.id)
            todo += [src for pos, src in enumerate(node.inputs) if pos not in node.gates]
    return seen


def test_gate_layers_stay_off_the_main_path(checked):
    """Each gate's own branch (its sigmoid/softmax and the convs that compute it) feeds
    no feature map, and none of it is on the main path or in the layer sequence."""
    _, result = checked
    analysis = result.analysis
    graph = analysis.graph
    features = feature_nodes(graph)
    on_path = set(analysis.border.main_path) | {layer.node for layer in analysis.border.sequence}
    assert on_path <= features
    for node_id in graph.gate_kinds:
        node = graph[node_id]
        branch = set().union(*(graph.ancestors(node.inputs[pos]) | {node.inputs[pos]}
                               for pos in node.gates)) - features
        assert any(graph[n].op in ("sigmoid", "softmax", "Softmax") for n in branch), node.name
        assert not branch & on_path


def test_cbam_spatial_gate_conv_is_no_feature_layer():
    analysis = rfalint.analyze(build("cbam_resnet18"), (3, 224, 224))
    graph = analysis.graph
    sequence = {graph[layer.node].name for layer in analysis.border.sequence}
    gate_convs = [n for n in graph if n.kind.name == "CONV" and n.scope.endswith("spatial_gate.spatial")]
    assert len(gate_convs) == 8
    assert not {n.name for n in gate_convs} & sequence
    assert not {n.id for n in gate_convs} & feature_nodes(graph)


def test_include_gates_counts_spatial_gates():
    """The literal max over every path: CBAM's 7x7 spatial gates widen the field, the
    channel gates (global pools) stay excluded."""
    model = build("cbam_resnet18")
    default = rfalint.analyze(model, (3, 224, 224))
    literal = rfalint.analyze(model, (3, 224, 224), include_gates=True)
    assert literal.gates_included
    assert literal.rf_final.r_max[0] > default.rf_final.r_max[0] == 435
    assert set(literal.graph.gate_kinds.values()) == {GateKind.CHANNEL}


def test_sk_selection_weights_keep_both_branches():
    """The softmax picks between branches, but both are feature paths: the RF of an SK
    conv is that of its dilated branch, 5 taps."""
    model = build("sk_resnet")
    analysis = rfalint.analyze(model, (3, 224, 224))
    graph = analysis.graph
    sk_out = [n for n in graph if n.scope == "layer1.0.conv2"][-1]  # the weighted sum
    assert sk_out.op == "sum"
    conv1 = analysis.rfs[graph.by_name("layer1.0.conv1").id].r_max[0]
    assert analysis.rfs[sk_out.id].r_max[0] == conv1 + 4 * 4  # 5 taps at jump 4
    sequence = [graph[layer.node].name for layer in analysis.border.sequence]
    assert "layer1.0.conv2.convs.1.0" in sequence  # the dilated branch is the longest
    assert analysis.rf_status[sk_out.id].value == "exact"


# The oracle on a strip input, long along the width only (the axes are independent), at
# a width where the centre unit's field is not clipped and, after nearest up-sampling,
# is the largest over positions; measured on the fixture's final feature map.
ORACLE = [("cbam_resnet18", "layer4", 512), ("bam_resnet18", "layer4", 512),
          ("sk_resnet", "layer4", 960), ("resnest", "layer4", 576),
          ("attention_unet", "out", 248), ("stack_fusion", "head", 192)]


@pytest.mark.parametrize("key, module, width", ORACLE)
def test_final_rf_matches_the_oracle_with_gates_detached(key, module, width):
    torch.manual_seed(0)
    support = gradient_support(build(key), (3, 64, width), module)
    assert not support.touches_border()[1]
    assert support.extent[1] == EXPECTED[key][1]


class _SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        return x * nn.Sigmoid()(self.fc(x.mean((2, 3), keepdim=True)))


def test_oracle_detaches_gates_only_on_request():
    assert gradient_support(_SqueezeExcite(), (3, 9, 9)).extent == (3, 3)
    literal = gradient_support(_SqueezeExcite(), (3, 9, 9), detach_gates=False)
    assert literal.extent == (9, 9)  # the global pool reaches every pixel


def test_oracle_keeps_swish_written_out():
    class Swish(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            x = self.conv(x)
            return x * torch.sigmoid(x)

    assert gradient_support(Swish(), (3, 9, 9)).extent == (3, 3)
