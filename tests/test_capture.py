"""Graph capture on PyTorch code as people write it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rfalint
from rfalint.capture import capture
from rfalint.errors import CollapseError, ModelError
from rfalint.graph import Kind

from conftest import FIXTURE_NAMES, fixture_input_shape, fixture_model, small_kwargs


def names_ops(graph):
    return [(n.name, n.op) for n in graph]


def test_module_called_twice_and_inplace():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            y += x  # in-place merge must become a node that later uses see
            return self.conv(y)

    g = capture(Net(), (4, 16, 16))
    assert names_ops(g)[1:] == [("conv", "Conv2d"), ("add", "add"), ("conv@2", "Conv2d")]
    add = g.by_name("add")
    assert add.inputs == [1, 0] and add.kind is Kind.MERGE
    assert g.by_name("conv@2").inputs == [add.id]


def test_tuple_and_dict_outputs_and_identity():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)
            self.skip = nn.Identity()

        def forward(self, x):
            y = self.a(x)
            return {"maps": (self.skip(y), y.flatten(1))}

    g = capture(Net(), (3, 16, 16))
    assert [g[o].name for o in g.outputs] == ["skip", "flatten"]
    assert g.by_name("skip").kind is Kind.POINTWISE
    assert g.by_name("flatten").kind is Kind.GLOBAL


def test_channels_last_permute_and_linear_as_pointwise():
    """ConvNeXt style: permute to NHWC, LayerNorm + Linear over channels, permute back."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
            self.norm = nn.LayerNorm(8)
            self.pw = nn.Linear(8, 8)

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.pw(self.norm(y)).permute(0, 3, 1, 2)
            return x + y

    analysis = rfalint.analyze(Block(), (8, 32, 32))
    g = analysis.graph
    assert g.by_name("pw").kind is Kind.CONV
    assert not [n for n in g if n.kind is Kind.UNKNOWN]
    assert analysis.rfs[g.by_name("add").id].r_max == (7, 7)


def test_unknown_op_is_a_finding_not_a_silent_1x1():
    class Net(nn.Module):
        def forward(self, x):
            return torch.roll(x, 2, dims=-1).mean((2, 3))

    result = rfalint.check(Net(), (3, 8, 8))
    assert [n.kind for n in result.analysis.graph][1] is Kind.UNKNOWN
    codes = [f.code for f in result.findings]
    assert "RFA201" in codes
    message = next(f.message for f in result.findings if f.code == "RFA201")
    assert "analysis incomplete: roll" in message


def test_se_gate_excluded_from_rf():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = nn.Linear(8, 2)
            self.fc2 = nn.Linear(2, 8)

        def forward(self, x):
            x = self.conv(x)
            s = F.adaptive_avg_pool2d(x, 1).flatten(1)
            s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
            x = x * s.view(-1, 8, 1, 1)
            return self.conv2(x) if hasattr(self, "conv2") else x.mean((2, 3))

    analysis = rfalint.analyze(SE(), (3, 16, 16))
    mul = analysis.graph.by_name("mul")
    assert mul.gates == (1,)
    assert analysis.rfs[mul.id].r_max == (3, 3)
    assert analysis.graph.by_name("fc1").id in analysis.border.gates


def test_data_dependent_control_flow_falls_back_to_real_tensors():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3)

        def forward(self, x):
            while x.shape[-1] > 4 and x.abs().sum() > 0:
                x = self.a(x)
            return x

    g = capture(Net(), (3, 16, 16))
    assert g.capture_mode == "real"
    assert [n.name for n in g][1:] == ["a", "a@2", "a@3", "a@4", "a@5", "a@6"]


def test_shape_only_capture_allocates_no_activations():
    # The stem's output alone would take 4096^2 x 64 x 4 bytes = 4 GiB on real tensors.
    g = capture(fixture_model("resnet18", width=64), (3, 8192, 8192))
    assert g.capture_mode == "meta"
    assert g[1].out_shape == (1, 64, 4096, 4096)


def test_tensors_made_on_the_cpu_inside_forward_use_fake_tensors():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x) + torch.ones(1, 3, 1, 1)  # a CPU constant, no device=x.device

    g = capture(Net(), (3, 8, 8))
    assert g.capture_mode == "fake"
    assert [n.op for n in g][1:] == ["Conv2d", "add"]


def test_collapse_names_the_layer():
    net = nn.Sequential(nn.Conv2d(3, 3, 3, stride=2), nn.Conv2d(3, 3, 3, stride=2), nn.Conv2d(3, 3, 3))
    with pytest.raises(ModelError, match=r"too small .* collapses at '2'"):
        capture(net, (3, 8, 8))


def test_forward_error_is_reported_with_scope():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 3, 1))

        def forward(self, x):
            raise ValueError("boom")

    with pytest.raises(ModelError, match="ValueError.*boom"):
        capture(Broken(), (3, 8, 8))


def test_a_failure_caught_by_the_model_closes_the_module_calls_it_left():
    """``try: conv(x) except: fallback(x)``: the failing conv's post hook never runs, and
    the modules after it must still be captured (as on real data), with their own names."""

    class Fallback(nn.Module):
        def __init__(self):
            super().__init__()
            self.big = nn.Sequential(nn.Conv2d(3, 4, 9), nn.ReLU())
            self.small = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            try:
                return self.big(x)
            except RuntimeError:
                return self.small(x)

    net = nn.Sequential(Fallback(), nn.Conv2d(4, 4, 3))
    graph = capture(net, (3, 6, 6))
    assert [(n.name, n.scope) for n in graph] == [("input", ""), ("0.small", "0"), ("1", "")]
    assert [n.name for n in capture(net, (3, 6, 6), mode="real")] == ["input", "0.small", "1"]
    assert [n.name for n in capture(net, (3, 12, 12))] == ["input", "0.big.0", "0.big.1", "1"]


def test_tensor_attributes_are_dataflow():
    """``x.real``, ``x.data`` and ``x.mT`` are tensors computed from ``x``: nodes, not lost
    outputs; ``.real`` and ``.data`` keep positions, ``.mT`` is reported as not understood."""

    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.fft2(x).real + x.data + x.mT

    graph = capture(nn.Sequential(nn.Conv2d(3, 3, 3), Spectral()), (3, 8, 8))
    kinds = {n.op: n.kind for n in graph}
    assert kinds["real"] is Kind.POINTWISE and kinds["data"] is Kind.POINTWISE
    assert kinds["mT"] is Kind.UNKNOWN and kinds["fft_fft2"] is Kind.UNKNOWN


def test_a_caught_failure_of_a_forward_pre_hook_leaves_no_call_open():
    from test_replay import PreHookFallback  # its block's pre-hook refuses odd widths

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), PreHookFallback(), nn.Conv2d(8, 2, 1))
    for mode in ("auto", "real"):
        assert [n.name for n in capture(net, (3, 9, 9), mode=mode)] == ["input", "0", "1.alt", "2"]
        assert [n.name for n in capture(net, (3, 8, 8), mode=mode)] == \
            ["input", "0", "1.block.0", "1.block.1", "2"]


def test_a_capture_leaves_the_model_as_it_was():
    """A submodule registered under two names, and lazy modules, must keep their tensors on
    the CPU: the shape-only capture swaps in meta tensors and must restore the model's own."""

    class Aliased(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(3 if i == 0 else 8, 8, 3),
                                                      nn.BatchNorm2d(8)) for i in range(2))
            self.head = self.blocks[-1]

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    lazy = nn.Sequential(nn.LazyConv2d(8, 3), nn.LazyBatchNorm2d(), nn.ReLU())
    for net in (Aliased(), lazy):
        graph = capture(net, (3, 16, 16))
        assert graph[len(graph) - 1].out_shape[1] == 8
        devices = {t.device.type for t in (*net.parameters(), *net.buffers())}
        assert devices == {"cpu"}
        assert net(torch.zeros(1, 3, 16, 16)).shape[1] == 8


def test_forward_error_names_the_innermost_module_it_passed():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 7)))
    with pytest.raises(ModelError, match=r"collapses at '0.1'"):
        capture(net, (3, 6, 6))


def test_every_fixture_is_understood():
    """No fixture hits an op rfalint does not know."""
    for name in FIXTURE_NAMES:
        analysis = rfalint.analyze(fixture_model(name, **small_kwargs(name)),
                                   fixture_input_shape(name))
        unknown = [n.name for n in analysis.graph if n.kind is Kind.UNKNOWN]
        assert unknown == [], (name, unknown)


def test_head_that_does_not_fit_still_analyses_the_features():
    result = rfalint.check(fixture_model("vgg16"), (3, 64, 64))
    graph = result.analysis.graph
    assert "classifier" in graph.head_error
    assert [graph[o].op for o in graph.outputs] == ["flatten"]
    assert result.analysis.border.b_min.index == 10  # conv 10's input r 76 > 64
    assert "RFA204" in [f.code for f in result.findings]


def test_auxiliary_head_does_not_hide_the_tail():
    """Early exits / aux classifiers: the deepest readout defines the main path."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.early = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
            self.late = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(12)])
            self.fc, self.aux = nn.Linear(8, 10), nn.Linear(8, 10)

        def forward(self, x):
            e = self.early(x)
            main = self.fc(self.late(e).mean((2, 3)))
            return self.aux(e.mean((2, 3))), main

    analysis = rfalint.analyze(Net(), (3, 16, 16))
    assert analysis.graph[analysis.border.b_min.node].name == "late.6"
    assert analysis.graph[analysis.border.readout].name == "mean"


def test_setitem_writes_are_dataflow():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 5, padding=2)

        def forward(self, x):
            y = self.a(x)
            out = torch.zeros_like(y)
            out[:, :, :, :] = self.b(y)
            return out

    analysis = rfalint.analyze(Net(), (3, 16, 16))
    assert [n.op for n in analysis.graph][1:] == ["Conv2d", "Conv2d", "copy"]
    assert analysis.rfs[len(analysis.graph) - 1].r_max == (7, 7)
    assert not [n for n in analysis.graph if n.kind is Kind.UNKNOWN]


def test_strided_slices_multiply_the_jump():
    class Focus(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(12, 8, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2],
                                        x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))

    analysis = rfalint.analyze(Focus(), (3, 32, 32))
    conv = analysis.graph.by_name("conv")
    assert analysis.rfs[conv.id].jump == (2, 2)
    assert analysis.rfs[conv.id].r_min == (5, 5)


def test_token_flatten_is_not_a_readout():
    class PatchEmbed(nn.Module):
        def __init__(self):
            super().__init__()
            self.pe = nn.Conv2d(3, 16, 4, stride=4)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            tokens = self.pe(x).flatten(2).transpose(1, 2)
            return self.fc(tokens.mean(1))

    result = rfalint.check(PatchEmbed(), (3, 32, 32), cost=False)
    codes = [f.code for f in result.findings]
    assert "RFA201" in codes and "RFA104" not in codes and "RFA105" not in codes


def test_adaptive_pool_to_a_larger_map_is_flagged():
    net = nn.Sequential(nn.Conv2d(3, 3, 3, stride=8), nn.AdaptiveAvgPool2d(7), nn.Conv2d(3, 3, 3))
    analysis = rfalint.analyze(net, (3, 35, 35))
    assert analysis.graph.by_name("1").kind is Kind.UNKNOWN
