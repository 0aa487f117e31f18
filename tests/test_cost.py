"""The cost model: params and MACs per node, both counters, shares, reports.

Convention under test (rfalint/analysis/cost.py): 1 MAC = 1 multiply-add of a conv,
linear or matrix product; everything else 0; FLOPs = 2 x MACs.
"""

from __future__ import annotations

import json
import logging
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import rfalint
from rfalint.analysis.cost import FVCORE, GRAPH, measure, regions
from rfalint.capture import capture
from rfalint.cli import app
from rfalint.errors import ModelError, UsageError
from rfalint.report import render_text, to_json
from conftest import FIXTURES, fixture_model

# --------------------------------------------------------------------------- conv formula


def _conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _expected_conv(conv: nn.Module, spatial: tuple[int, ...]) -> tuple[int, int]:
    """Analytic (MACs, params) from the layer's hyper-parameters alone."""
    k, s, p, d = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    g, cin, cout = conv.groups, conv.in_channels, conv.out_channels
    params = cout * (cin // g) * math.prod(k) + cout
    if conv.transposed:
        # every input value is multiplied into (cout / g) x kernel outputs
        return cin * math.prod(spatial) * (cout // g) * math.prod(k), params
    out = [_conv_out(n, *args) for n, args in zip(spatial, zip(k, s, p, d))]
    return cout * math.prod(out) * (cin // g) * math.prod(k), params


CONVS = [
    (nn.Conv1d(4, 6, 5, stride=2, padding=1, dilation=2), (4, 37)),
    (nn.Conv2d(6, 9, 3, stride=2, padding=2, dilation=3, groups=3), (6, 17, 23)),
    (nn.Conv2d(8, 8, (1, 7), padding=(0, 3), groups=8), (8, 10, 12)),
    (nn.Conv3d(4, 6, (3, 1, 3), stride=(1, 2, 2), groups=2), (4, 5, 9, 11)),
    (nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1), (4, 9)),
    (nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2),
     (6, 5, 7)),
    (nn.ConvTranspose3d(2, 4, 2, stride=2), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("counter", [FVCORE, GRAPH])
@pytest.mark.parametrize("conv,shape", CONVS, ids=lambda v: type(v).__name__ if
                         isinstance(v, nn.Module) else "x".join(map(str, v)))
def test_conv_macs_match_the_analytic_formula(conv, shape, counter):
    net = nn.Sequential(conv)
    cost = measure(net, capture(net, shape), counter=counter)
    macs, params = _expected_conv(conv, shape[1:])
    assert cost.counter == counter
    assert (cost.macs[1], cost.params[1]) == (macs, params)
    assert (cost.macs_total, cost.params_total, cost.flops_total) == (macs, params, 2 * macs)


class FunctionalConv(nn.Module):
    """F.conv2d with raw parameters: the node has no module, the graph counter sizes it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 2, 3, 3))
        self.bias = nn.Parameter(torch.zeros(8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = F.conv2d(x, self.weight, self.bias, stride=2, padding=1, dilation=2, groups=2)
        return self.head(y.mean((2, 3)))


@pytest.mark.parametrize("counter", [FVCORE, GRAPH])
def test_functional_conv_gets_its_own_macs_and_params(counter):
    net = FunctionalConv()
    graph = capture(net, (4, 11, 11))
    cost = measure(net, graph, counter=counter)
    conv = graph.by_name("conv2d")
    out = _conv_out(11, 3, 2, 1, 2)  # 5
    assert cost.macs[conv.id] == 8 * out * out * (4 // 2) * 9
    assert cost.params[conv.id] == 8 * 2 * 9 + 8
    assert cost.params_unattributed == 0 and cost.macs_unattributed == 0
    assert cost.macs_total == 8 * out * out * 18 + 8 * 3


# --------------------------------------------------------------------------- FlopCounterMode


class Attention(nn.Module):
    """Linear on tokens, bmm, matmul, and matmuls with a parameter on either side."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.q = nn.Linear(8, 8)
        self.right = nn.Parameter(torch.randn(8, 4))
        self.left = nn.Parameter(torch.randn(4, 64))

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)  # (1, 64 tokens, 8)
        a = torch.bmm(self.q(t), t.transpose(1, 2))  # (1, 64, 64)
        o = torch.matmul(a, t)  # (1, 64, 8)
        return self.left @ (o @ self.right)  # (1, 64, 4) then (1, 4, 4)


ATTENTION_MACS = (8 * 64 * 27  # conv
                  + 64 * 8 * 8  # q
                  + 64 * 64 * 8  # bmm
                  + 64 * 8 * 64  # matmul
                  + 64 * 4 * 8  # o @ right
                  + 4 * 4 * 64)  # left @ ...


def _flop_counter_macs(model: nn.Module, shape) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize("counter", [FVCORE, GRAPH])
def test_matrix_products_are_counted_by_hand(counter):
    net = Attention()
    cost = measure(net, capture(net, (3, 8, 8)), counter=counter)
    assert cost.macs_total == ATTENTION_MACS == _flop_counter_macs(net, (3, 8, 8))
    assert cost.macs_unattributed == 0


FIXTURE_SHAPES = {
    "resnet18": (3, 32, 32), "vgg16": (3, 32, 32), "densenet": (3, 32, 32),
    "mobilenetv2": (3, 32, 32), "efficientnet": (3, 32, 32), "inception": (3, 32, 32),
    "unet": (3, 32, 32), "se_resnet": (3, 32, 32), "cbam_net": (3, 32, 32),
    "functional_net": (3, 32, 32), "audio1d": (1, 4000), "video3d": (3, 16, 32, 32),
}


@pytest.fixture(scope="module")
def fixture_costs():
    """Both counters on every fixture, computed once."""
    out = {}
    for name, shape in FIXTURE_SHAPES.items():
        model = fixture_model(name)
        graph = capture(model, shape)
        out[name] = (model, graph, measure(model, graph, counter=FVCORE),
                     measure(model, graph, counter=GRAPH))
    return out


@pytest.mark.parametrize("name", FIXTURE_SHAPES)
def test_totals_agree_with_flop_counter_mode(name, fixture_costs):
    model, _, cost, _ = fixture_costs[name]
    assert cost.counter == FVCORE
    assert cost.macs_total == _flop_counter_macs(model, FIXTURE_SHAPES[name])


@pytest.mark.parametrize("name", FIXTURE_SHAPES)
def test_graph_counter_agrees_with_fvcore_per_node(name, fixture_costs):
    _, graph, fv, own = fixture_costs[name]
    assert own.counter == GRAPH and own.fallback_reason is None
    assert [(n.name, m) for n, m in zip(graph, own.macs)] == \
           [(n.name, m) for n, m in zip(graph, fv.macs)]
    assert own.macs_total == fv.macs_total
    assert own.params == fv.params and own.params_total == fv.params_total
    assert fv.params_unattributed == 0


def test_params_total_is_fvcore_parameter_count(fixture_costs):
    from fvcore.nn import parameter_count

    for model, _, cost, _ in fixture_costs.values():
        assert cost.params_total == parameter_count(model)[""] == sum(cost.params)


def test_module_called_twice_splits_fvcore_total_and_owns_params_once(fixture_costs):
    _, graph, cost, _ = fixture_costs["functional_net"]
    first, second = graph.by_name("shared"), graph.by_name("shared@2")
    assert cost.params[first.id] == 16 * 16 * 9 + 16 and cost.params[second.id] == 0
    per_call = 16 * 16 * 16 * 16 * 9  # 16 out channels at 16x16, 16 in x 3x3
    assert cost.macs[first.id] == cost.macs[second.id] == per_call


# --------------------------------------------------------------------------- references


def test_resnet18_reference_values():
    imagenet = rfalint.check(fixture_model("resnet18"), (3, 32, 32), counter=FVCORE).cost
    cifar = rfalint.check(fixture_model("resnet18", stem="cifar"), (3, 32, 32), counter=FVCORE).cost
    default = rfalint.check(fixture_model("resnet18"), (3, 32, 32)).cost
    assert default.counter == GRAPH and default.fallback_reason is None
    assert (default.params, default.macs) == (imagenet.params, imagenet.macs)
    assert imagenet.params_total == 11_689_512
    assert imagenet.macs_total / 1e9 == pytest.approx(0.037, abs=0.001)
    assert cifar.macs_total / 1e9 == pytest.approx(0.555, abs=0.001)
    assert imagenet.counter == cifar.counter == FVCORE
    assert imagenet.skipped_ops == {"aten::add_": 8, "aten::max_pool2d": 1}


# --------------------------------------------------------------------------- shares


def _vgg_like():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),  # 0: r 3
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),  # 2: r 5
        nn.MaxPool2d(2),  # 4: r 6, jump 2
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),  # 5: input r 6 <= 8: productive
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),  # 7: input r 10 > 8: b_min, the tail
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_tail_share_exact_on_hand_computed_vgg():
    result = rfalint.check(_vgg_like(), (3, 8, 8))
    graph, cost = result.analysis.graph, result.cost
    assert [graph[i].name for i in result.analysis.border.tail] == ["7", "8"]
    # params: conv weights + biases            MACs at 8x8 input (out positions x Cin x 9)
    # 0: 3*4*9+4 = 112                          4*8*8 * 3*9   = 6912
    # 2: 4*8*9+8 = 296                          8*8*8 * 4*9   = 18432
    # 5: 8*8*9+8 = 584                          8*4*4 * 8*9   = 9216
    # 7: 8*16*9+16 = 1168                       16*4*4 * 8*9  = 18432
    # 11: 16*10+10 = 170                        10 * 16       = 160
    assert (cost.params_total, cost.macs_total) == (2330, 53152)
    tail = cost.share(regions(result.analysis.border)["tail"])
    assert (tail.params, tail.macs) == (1168, 18432)
    assert tail.params_fraction == 1168 / 2330 and tail.macs_fraction == 18432 / 53152
    assert regions(result.analysis.border)["critical"] == []


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.pool = nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.c, self.d = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.e = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.stem(x))  # r 4, jump 2
        x = self.b(self.a(x)) + x  # r_min 4, r_max 12
        return self.fc(self.e(self.d(self.c(x))).mean((2, 3)))


def test_critical_and_tail_shares_exact_on_hand_computed_resnet():
    result = rfalint.check(SmallResNet(), (3, 8, 8))
    graph, border, cost = result.analysis.graph, result.analysis.border, result.cost
    named = {k: [graph[i].name for i in ids] for k, ids in regions(border).items()}
    # inputs of c, d, e carry r_min/r_max 12/12, 8/16, 12/20 against I = 8
    assert named == {"tail": ["e"], "critical": ["c", "d"]}
    # params: stem 112, a 148, b 148, c 4*8*9+8 = 296, d 584, e 584, fc 90 -> 1962
    # MACs at 4x4 after the pool: a, b 4*16*36 = 2304; c 8*16*36 = 4608; d, e 8*16*72 = 9216
    assert (cost.params_total, cost.macs_total) == (1962, 6912 + 2304 * 2 + 4608 + 9216 * 2 + 80)
    critical = cost.share(regions(border)["critical"])
    assert (critical.params, critical.macs) == (296 + 584, 4608 + 9216)
    assert critical.macs_fraction == 13824 / 34640
    tail = cost.share(regions(border)["tail"])
    assert (tail.params_fraction, tail.macs_fraction) == (584 / 1962, 9216 / 34640)


def test_text_and_json_state_the_shares():
    result = rfalint.check(SmallResNet(), (3, 8, 8), name="small")
    summary = json.loads(to_json(result))["summary"]
    assert summary["tail_cost"] == {"nodes": 1, "conv_layers": 1, "params": 584, "macs": 9216,
                                    "params_share": 584 / 1962, "macs_share": 9216 / 34640}
    assert summary["critical_cost"]["conv_layers"] == 2
    assert (summary["params"], summary["macs"], summary["flops"]) == (1962, 34640, 69280)
    assert summary["cost_counter"] == "rfalint-graph" and summary["cost_fallback"] is None
    from rich.console import Console

    console = Console(width=200, record=True)
    render_text(result, console)
    text = console.export_text()
    assert "MACs (M)" in text and "params" in text
    assert "the tail (1 conv layer) holds 29.8% of params and 26.6% of MACs" in text
    assert "the critical nodes (2 conv layers) hold 44.9% of params and 39.9% of MACs" in text
    assert "1,962 params, 34.64 K MACs = 69.28 K FLOPs" in text


# --------------------------------------------------------------------------- fallback


class DictWithCount(nn.Module):
    """Returns a dict holding a non-tensor: torch.jit.trace (so fvcore) cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = F.relu(self.conv(x))
        if y.mean() > 0:  # data-dependent control flow as well
            y = y * 2
        return {"logits": self.fc(y.mean((2, 3))), "steps": 3}


def test_default_counts_without_fvcore_and_a_failing_fvcore_is_clean(caplog, capfd):
    model = DictWithCount()
    hooks_before = [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model.modules()]
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        result = rfalint.check(model, (3, 10, 10), name="dict")
        cost = result.cost
        assert cost.counter == GRAPH and cost.fallback_reason is None
        assert cost.macs_total == 4 * 8 * 8 * 27 + 2 * 4
        assert cost.params_total == 4 * 27 + 4 + 4 * 2 + 2 == sum(cost.params)
        with pytest.raises(ModelError, match="fvcore could not count this model"):
            measure(model, result.analysis.graph, counter=FVCORE)
    assert not seen and not caplog.records and capfd.readouterr().err == ""
    # fvcore's scope hooks are gone although its trace failed
    assert [(len(m._forward_pre_hooks), len(m._forward_hooks))
            for m in model.modules()] == hooks_before
    summary = json.loads(to_json(result))["summary"]
    assert summary["cost_counter"] == "rfalint-graph"
    assert summary["cost_fallback"] is None


class Einsum1x1(nn.Module):
    """A 1x1 conv written as einsum: MACs the graph counter cannot derive."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.mix = nn.Parameter(torch.ones(4, 4))

    def forward(self, x):
        y = self.conv(x)
        return torch.einsum("nchw,cd->ndhw", y, self.mix).mean((2, 3))


def test_auto_falls_back_to_fvcore_for_ops_the_graph_counter_cannot_count():
    result = rfalint.check(Einsum1x1(), (3, 10, 10))
    cost = result.cost
    assert cost.counter == FVCORE
    assert cost.fallback_reason == "the graph counter cannot count einsum: fvcore counted"
    assert cost.macs_total == 4 * 8 * 8 * 27 + 4 * 8 * 8 * 4


def test_fvcore_success_is_silent_on_a_data_dependent_forward(caplog, capfd):
    model = fixture_model("functional_net")  # `if x.abs().amax() > 1e4` -> TracerWarning
    graph = capture(model, (3, 16, 16))
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        cost = measure(model, graph, counter=FVCORE)
    assert cost.counter == FVCORE
    assert not seen and not caplog.records and capfd.readouterr().err == ""


def test_head_that_fails_at_this_resolution_is_not_traced():
    """Cifar VGG16's classifier only fits 32 px: at 64 px the features are still counted."""
    model = fixture_model("vgg16")
    at32 = rfalint.check(model, (3, 32, 32)).cost
    result = rfalint.check(model, (3, 64, 64))
    cost = result.cost
    assert result.analysis.graph.head_error
    assert cost.counter == GRAPH and cost.fallback_reason is None
    assert cost.params_unattributed == 512 * 10 + 10 and cost.params_total == at32.params_total
    assert cost.macs_total == 4 * (at32.macs_total - 512 * 10)  # 4x the positions per conv


class Mixer(nn.Module):
    """An einsum with a weight in a custom forward: fvcore counts it, the graph cannot."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.mix = nn.Parameter(torch.randn(6, 4))

    def forward(self, x):
        return torch.einsum("nchw,oc->nohw", self.conv(x), self.mix)


def test_macs_no_node_holds_are_kept_as_unattributed():
    model = Mixer()
    graph = capture(model, (3, 5, 5))
    fv, own = measure(model, graph), measure(model, graph, counter=GRAPH)
    conv, einsum = 4 * 25 * 3, 6 * 25 * 4
    assert (fv.macs_total, fv.macs_unattributed) == (conv + einsum, einsum)
    assert (own.macs_total, own.skipped_ops) == (conv, {"einsum": 1})
    assert own.params_unattributed == 6 * 4  # a raw parameter no conv/linear call uses


def test_unknown_counter_is_a_usage_error():
    net = nn.Sequential(nn.Conv2d(1, 1, 1))
    with pytest.raises(UsageError, match="counter must be one of"):
        measure(net, capture(net, (1, 4, 4)), counter="ptflops")


# --------------------------------------------------------------------------- API and CLI


def test_check_without_cost():
    result = rfalint.check(_vgg_like(), (3, 8, 8), cost=False)
    assert result.cost is None
    data = json.loads(to_json(result))
    assert data["summary"]["params"] is None and data["summary"]["tail_cost"] is None
    assert all(layer["macs"] is None for layer in data["layers"])


def test_cli_json_has_cost_and_no_cost_flag_skips_it():
    runner = CliRunner()
    target = str(FIXTURES / "vgg16.py")
    with_cost = runner.invoke(app, ["check", target, "--res", "32", "-f", "json", "--fail-on",
                                    "never"])
    assert with_cost.exit_code == 0, with_cost.output
    data = json.loads(with_cost.stdout)
    assert data["summary"]["params"] == 14_728_266
    assert data["summary"]["macs"] == sum(layer["macs"] for layer in data["layers"])
    assert data["summary"]["skipped_ops"] == {} and data["summary"]["cost_counter"] == "rfalint-graph"
    without = runner.invoke(app, ["check", target, "--res", "32", "-f", "json", "--fail-on",
                                  "never", "--no-cost"])
    assert without.exit_code == 0, without.output
    assert json.loads(without.stdout)["summary"]["macs"] is None
