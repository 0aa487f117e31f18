"""The shape-only capture (meta/fake tensors, patched leaf forwards, skipped kernels) must
give exactly the graph a plain real-data capture gives: same nodes, ops, inputs, shapes,
geometry, RFs, borders and findings. Checked on every fixture and on random module stacks
that mix exact layer types with subclassed and wrapped ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfalint.analysis import analyze_graph
from rfalint.capture import capture
from rfalint.rules import run_rules

from conftest import FIXTURE_NAMES, fixture_input_shape, fixture_model, small_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")

def node_record(node) -> tuple:
    return (node.id, node.name, node.op, node.kind, node.inputs, node.input_slots,
            node.out_shapes, node.layout, node.in_shape, node.geometry, node.gates,
            node.scope, node.note, repr(sorted(node.call_args.items())),
            type(node.module).__name__, node.aliases)


def everything(graph) -> tuple:
    """All a capture decides, and all the analysis and rules derive from it."""
    analysis = analyze_graph(graph)
    rfs = [None if rf is None else (rf.r_min, rf.r_max, rf.jump) for rf in analysis.rfs]
    border = analysis.border
    findings = [(f.code, f.layer, f.message) for f in run_rules(analysis)
                if f.code != "RFA203"]  # "captured on real data" is what mode="real" forces
    return ([node_record(n) for n in graph], graph.outputs, graph.head_error, rfs,
            border.main_path, border.tail, border.status,
            border.b_min and border.b_min.node, border.b_max and border.b_max.node, findings)


def assert_same_capture(model: nn.Module, shape: tuple[int, ...]) -> None:
    fast = capture(model, shape)
    real = capture(model, shape, mode="real")
    assert real.capture_mode == "real"
    assert everything(fast) == everything(real)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_shape_only_capture_equals_real(name):
    torch.manual_seed(0)
    model = fixture_model(name, **small_kwargs(name))
    assert_same_capture(model, fixture_input_shape(name))


# --------------------------------------------------------------------------- random stacks


class NormAct(nn.BatchNorm2d):
    """A norm subclass with its own forward (norm, then an activation child)."""

    def __init__(self, channels):
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         False, 0.0, self.eps)
        return self.act(x)


class PlainSubclassNorm(nn.BatchNorm2d):
    """A subclass that changes nothing the forward computes: still a leaf."""


class DoubledReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) * 2


class SamePadConv(nn.Conv2d):
    def forward(self, x):
        k = self.kernel_size[0]
        x = F.pad(x, [(k - 1) // 2, k // 2, (k - 1) // 2, k // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class Wrapped(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class ChannelsLastBlock(nn.Module):
    """ConvNeXt-style: norm and MLP over channels-last, permuted back, then reshaped; and
    activations on the permuted map (a reshape after them copies only if they do not keep
    its layout)."""

    def __init__(self):
        super().__init__()
        self.norm, self.fc, self.act = nn.LayerNorm(C), nn.Linear(C, C), nn.GELU()

    def forward(self, x):
        y = self.act(self.fc(self.norm(x.permute(0, 2, 3, 1))))
        z = F.relu(x.permute(0, 2, 3, 1)).flatten(2)  # a copy: relu keeps the permuted layout
        return (y + z.reshape(y.shape)).permute(0, 3, 1, 2)


class Residual(nn.Module):
    """The shortcut is read after the body ran, so an in-place op or an identity in the
    body decides which node it comes from."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        y = self.body(x)
        return x + F.dropout(y, 0.1, self.training)


C = 4
LAYERS = {
    "conv": lambda k: nn.Conv2d(C, C, k, padding=k // 2),
    "same_conv": lambda k: SamePadConv(C, C, k),
    "strided": lambda k: nn.Conv2d(C, C, k, stride=2, padding=k // 2),
    "bn": lambda k: nn.BatchNorm2d(C),
    "plain_sub_bn": lambda k: PlainSubclassNorm(C),
    "norm_act": lambda k: NormAct(C),
    "relu": lambda k: nn.ReLU(),
    "inplace_relu": lambda k: nn.ReLU(inplace=True),
    "identity": lambda k: nn.Identity(),
    "channels_last_block": lambda k: ChannelsLastBlock(),
    "dropout": lambda k: nn.Dropout(0.5),
    "doubled_relu": lambda k: DoubledReLU(),
    "maxpool": lambda k: nn.MaxPool2d(2, 1, 1),
    "wrapped_conv": lambda k: Wrapped(nn.Conv2d(C, C, k, padding=k // 2)),
    "wrapped_norm_act": lambda k: Wrapped(NormAct(C)),
    "residual": lambda k: Residual(nn.Sequential(nn.Conv2d(C, C, k, padding=k // 2), NormAct(C))),
    "residual_inplace": lambda k: Residual(nn.Sequential(nn.ReLU(inplace=True), nn.Identity(),
                                                         nn.Conv2d(C, C, k, padding=k // 2))),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(LAYERS)), st.sampled_from([1, 3, 5])),
                min_size=1, max_size=8))
def test_random_stacks_shape_only_capture_equals_real(layers):
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1),
                          *(LAYERS[kind](k) for kind, k in layers),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, 2))
    assert_same_capture(model, (3, 24, 24))


def test_norm_subclass_with_its_own_forward_is_recorded_not_skipped():
    model = nn.Sequential(nn.Conv2d(3, C, 3), NormAct(C), nn.Conv2d(C, C, 3))
    graph = capture(model, (3, 16, 16))
    assert [n.name for n in graph] == ["input", "0", "1.batch_norm", "1.act", "2"]
    plain = capture(nn.Sequential(nn.Conv2d(3, C, 3), PlainSubclassNorm(C)), (3, 16, 16))
    assert [(n.name, n.op) for n in plain][-1] == ("1", "PlainSubclassNorm")


def test_layouts_after_permutes_match_real_data():
    """Whether a reshape copies depends on the layout the op before it returned (activation
    memory counts the copy): elementwise ops keep a permuted layout, norms do not."""
    assert_same_capture(nn.Sequential(nn.Conv2d(3, C, 3, padding=1), ChannelsLastBlock()),
                        (3, 8, 8))
    graph = capture(nn.Sequential(nn.Conv2d(3, C, 3, padding=1), ChannelsLastBlock()), (3, 8, 8))
    assert not graph.by_name("1.flatten").aliases


class ContiguityBranchNorm(nn.LayerNorm):
    """timm's older LayerNorm2d: a different path for channels-last maps."""

    def forward(self, x):
        if x.is_contiguous():
            return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
                                self.bias, self.eps).permute(0, 3, 1, 2)
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps)


class ChannelsLastStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, C, 4, stride=4)
        self.norm = ContiguityBranchNorm(C)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(C, C, 2, stride=2)
        self.conv = nn.Conv2d(C, C, 3, padding=1)

    def forward(self, x):
        y = self.norm(self.stem(x))
        return self.norm(self.conv(self.up(self.pool(y)) + y))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_channels_last_models_take_the_real_data_path(memory_format):
    """Convs return channels-last maps for channels-last inputs or weights on CPU and CUDA
    (torch's meta kernel does not): a forward that branches on contiguity must see that."""
    model = ChannelsLastStage().to(memory_format=memory_format)
    assert_same_capture(model, (3, 32, 32))
    first_norm = [n.op for n in capture(model, (3, 32, 32))][2]
    assert first_norm == ("var_mean" if memory_format == torch.channels_last else "permute")


class SizeAsTensor(nn.Module):
    """Sizes computed as CPU tensors inside forward: their values decide the pad and the
    path, so ops on them must really run, also in a shape-only capture."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, C, 3, 2, 1), nn.Conv2d(C, C, 3, 2, 1)

    def forward(self, x):
        pad = int((32 - torch.tensor(x.shape[-1]) % 32) % 32)
        y = self.a(F.pad(x, (0, pad, 0, pad)))
        return self.b(y) if bool(torch.tensor(y.shape[-1]) >= 16) else y


@pytest.mark.parametrize("size", [20, 50, 64])
def test_tensors_made_from_sizes_inside_forward_have_real_values(size):
    assert_same_capture(SizeAsTensor(), (3, size, size))
