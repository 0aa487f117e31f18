"""Export: model -> captured graph -> spec -> YAML -> built model, and what it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import fixture_model

import rfalint
import rfalint.spec as spec
from rfalint.spec import ExportError
from rfalint.spec.ops import OPS

ROUND_TRIP = {  # id: (fixture, factory kwargs, input shape)
    "vgg16": ("vgg16", {}, (3, 32, 32)),
    "resnet18": ("resnet18", {}, (3, 32, 32)),
    "resnet18_cifar_stem": ("resnet18", {"stem": "cifar", "width": 16}, (3, 32, 32)),
    "resnet50": ("resnet50", {"width": 8}, (3, 64, 64)),
    "densenet": ("densenet", {"growth_rate": 8, "block_config": (2, 4, 6, 3),
                              "num_init_features": 16}, (3, 32, 32)),
    "inception": ("inception", {}, (3, 32, 32)),
    "mobilenetv2": ("mobilenetv2", {}, (3, 32, 32)),
    "efficientnet": ("efficientnet", {"width_mult": 0.5, "depth_mult": 0.5}, (3, 32, 32)),
    "unet": ("unet", {}, (3, 32, 32)),
    "audio1d": ("audio1d", {}, (1, 4000)),
    "se_resnet": ("se_resnet", {}, (3, 32, 32)),
    "mpnet18": ("mpnet18", {"width": 8}, (3, 32, 32)),
    "video3d": ("video3d", {}, (3, 8, 16, 16)),
    "nonsquare": ("nonsquare", {}, (3, 32, 24)),
    "vgg19_dilated": ("vgg19_dilated", {}, (3, 32, 32)),
}


def _structure(graph):
    return [(n.name, n.op, n.kind, [graph[i].name for i in n.inputs], n.out_shapes, n.geometry)
            for n in graph]


def _rfs(analysis):
    return [None if rf is None else (rf.r_min, rf.r_max) for rf in analysis.rfs]


@pytest.mark.parametrize("case", sorted(ROUND_TRIP))
def test_export_round_trip(case):
    name, kwargs, shape = ROUND_TRIP[case]
    model = fixture_model(name, **kwargs).eval()
    data = spec.export(model, shape, name)
    rebuilt = spec.loads(spec.dump(data), f"{name}.yaml").eval()

    assert sum(p.numel() for p in rebuilt.parameters()) == \
        sum(p.numel() for p in model.parameters())
    rebuilt.load_state_dict(model.state_dict())  # strict: the same names and shapes

    original, copy = rfalint.analyze(model, shape), rfalint.analyze(rebuilt, shape)
    assert _structure(copy.graph) == _structure(original.graph)
    assert _rfs(copy) == _rfs(original)
    assert copy.border.b_min == original.border.b_min and copy.border.b_max == original.border.b_max

    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, have = model(x), rebuilt(x)
    assert have.shape == want.shape
    assert torch.allclose(have, want, rtol=1e-4, atol=1e-5)

    # Exporting the rebuilt model gives the same spec: op modules export as their ops.
    assert spec.from_graph(copy.graph, name) == data


def test_export_writes_reuse_for_modules_called_again():
    data = spec.export(fixture_model("resnet18", width=8), (3, 32, 32), "resnet18")
    entries = {layer["name"]: layer for layer in data["layers"]}
    assert entries["layer1.0.relu@2"] == {"name": "layer1.0.relu@2", "reuse": "layer1.0.relu"}
    assert entries["layer1.0.add"] == {"name": "layer1.0.add", "type": "add",
                                       "from": ["layer1.0.bn2", "maxpool"]}
    # Only arguments that differ from the defaults, and the short form of uniform tuples.
    assert entries["conv1"]["args"] == {"in_channels": 3, "out_channels": 8, "kernel_size": 7,
                                        "stride": 2, "padding": 3, "bias": False}
    assert entries["avgpool"]["args"] == {"output_size": [1, 1]}
    assert "outputs" not in data and data["input"] == {"channels": 3, "size": [32, 32]}


def test_export_of_a_spec_is_the_spec(root):
    """A hand-written spec exports to its flat form, which builds the same graph."""
    model = spec.load(root / "fixtures/mobilenetv2.yaml")
    data = spec.export(model, (3, 32, 32), "mobilenetv2")
    assert data["layers"][0] == {"name": "0.0.0", "type": "Conv2d", "args": {
        "in_channels": 3, "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1,
        "bias": False}}
    assert {"name": "0.3.add", "type": "add", "from": ["0.2.conv.3", "0.3.conv.3"]} \
        in data["layers"]


# ----------------------------------------------------------------------------- every op

# op: (functional form on the branches a, b, expected spec args, input shape)
OP_CASES = {
    "add": (lambda a, b: a + b, {}, 2),
    "sub": (lambda a, b: a - b, {}, 2),
    "mul": (lambda a, b: a * b, {}, 2),
    "div": (lambda a, b: a / torch.sigmoid(b), {}, 2),
    "maximum": (lambda a, b: torch.maximum(a, b), {}, 2),
    "minimum": (lambda a, b: torch.minimum(a, b), {}, 2),
    "cat": (lambda a, b: torch.cat([a, b], dim=1), {"dim": 1}, 2),
    "expand_as": (lambda a, b: a * a.mean((2, 3), keepdim=True).expand_as(b), {}, 2),
    "relu": (lambda a, b: F.relu(a, inplace=True), {}, 2),
    "relu6": (lambda a, b: F.relu6(a), {}, 2),
    "silu": (lambda a, b: F.silu(a), {}, 2),
    "sigmoid": (lambda a, b: a.sigmoid(), {}, 2),
    "tanh": (lambda a, b: torch.tanh(a), {}, 2),
    "hardswish": (lambda a, b: F.hardswish(a), {}, 2),
    "hardsigmoid": (lambda a, b: F.hardsigmoid(a), {}, 2),
    "mish": (lambda a, b: F.mish(a), {}, 2),
    "gelu": (lambda a, b: F.gelu(a, approximate="tanh"), {"approximate": "tanh"}, 2),
    "contiguous": (lambda a, b: a.permute(0, 1, 3, 2).contiguous(), {}, 2),
    "leaky_relu": (lambda a, b: F.leaky_relu(a, 0.2), {"negative_slope": 0.2}, 2),
    "elu": (lambda a, b: F.elu(a, 0.5), {"alpha": 0.5}, 2),
    "softplus": (lambda a, b: F.softplus(a, beta=2.0, threshold=10.0),
                 {"beta": 2.0, "threshold": 10.0}, 2),
    "hardtanh": (lambda a, b: F.hardtanh(a, -0.5, 0.5), {"min_val": -0.5, "max_val": 0.5}, 2),
    "clamp": (lambda a, b: torch.clamp(a, min=-0.1, max=0.2), {"min": -0.1, "max": 0.2}, 2),
    "dropout": (lambda a, b: F.dropout(a, 0.3, training=False), {"p": 0.3}, 2),
    "softmax": (lambda a, b: F.softmax(a, dim=1), {"dim": 1}, 2),
    "log_softmax": (lambda a, b: F.log_softmax(a, dim=1), {"dim": 1}, 2),
    "normalize": (lambda a, b: F.normalize(a, dim=1), {}, 2),
    "max_pool1d": (lambda a, b: F.max_pool1d(a, 3, 2, 1), {"kernel_size": 3, "stride": 2,
                                                          "padding": 1}, 1),
    "max_pool2d": (lambda a, b: F.max_pool2d(a, 2), {"kernel_size": 2}, 2),
    "max_pool3d": (lambda a, b: F.max_pool3d(a, 2, dilation=2), {"kernel_size": 2,
                                                                 "dilation": 2}, 3),
    "avg_pool1d": (lambda a, b: F.avg_pool1d(a, 2), {"kernel_size": 2}, 1),
    "avg_pool2d": (lambda a, b: F.avg_pool2d(a, 3, 1, 1, count_include_pad=False),
                   {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}, 2),
    "avg_pool3d": (lambda a, b: F.avg_pool3d(a, 2), {"kernel_size": 2}, 3),
    "adaptive_avg_pool1d": (lambda a, b: F.adaptive_avg_pool1d(a, 2), {"output_size": 2}, 1),
    "adaptive_avg_pool2d": (lambda a, b: F.adaptive_avg_pool2d(a, 1), {"output_size": 1}, 2),
    "adaptive_avg_pool3d": (lambda a, b: F.adaptive_avg_pool3d(a, 2), {"output_size": 2}, 3),
    "adaptive_max_pool1d": (lambda a, b: F.adaptive_max_pool1d(a, 2), {"output_size": 2}, 1),
    "adaptive_max_pool2d": (lambda a, b: F.adaptive_max_pool2d(a, 2), {"output_size": 2}, 2),
    "adaptive_max_pool3d": (lambda a, b: F.adaptive_max_pool3d(a, 2), {"output_size": 2}, 3),
    "interpolate": (lambda a, b: F.interpolate(a, scale_factor=2, mode="bilinear"),
                    {"scale_factor": 2.0, "mode": "bilinear"}, 2),
    "pixel_shuffle": (lambda a, b: F.pixel_shuffle(a, 2), {"upscale_factor": 2}, 2),
    "pixel_unshuffle": (lambda a, b: F.pixel_unshuffle(a, 2), {"downscale_factor": 2}, 2),
    "pad": (lambda a, b: F.pad(a, (1, 1, 2, 2), mode="reflect"),
            {"pad": [1, 1, 2, 2], "mode": "reflect"}, 2),
    "flatten": (lambda a, b: torch.flatten(a, 1), {"start_dim": 1}, 2),
    "view": (lambda a, b: a.view(a.shape[0], 4, -1), {"shape": [4, 256]}, 2),
    "reshape": (lambda a, b: a.reshape(a.size(0), 2, 8, 64), {"shape": [2, 8, 64]}, 2),
    "permute": (lambda a, b: a.permute(0, 2, 3, 1), {"dims": [0, 2, 3, 1]}, 2),
    "transpose": (lambda a, b: a.transpose(2, 3), {"dim0": 2, "dim1": 3}, 2),
    "squeeze": (lambda a, b: a.mean(1, keepdim=True).squeeze(1), {"dim": 1}, 2),
    "unsqueeze": (lambda a, b: a.unsqueeze(2), {"dim": 2}, 2),
    "mean": (lambda a, b: a.mean((2, 3)), {"dim": [2, 3]}, 2),
    "sum": (lambda a, b: a.sum(1), {"dim": 1}, 2),
    "amax": (lambda a, b: torch.amax(a, dim=(2, 3)), {"dim": [2, 3]}, 2),
    "amin": (lambda a, b: a.amin(1, keepdim=True), {"dim": 1, "keepdim": True}, 2),
}

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class _OpModel(nn.Module):
    """Two conv branches and one functional op on them (unary ops read both via a + b)."""

    def __init__(self, fn, dims: int):
        super().__init__()
        self.a = _CONV[dims](4, 4, 3, padding=1)
        self.b = _CONV[dims](4, 4, 1)
        self.fn = fn

    def forward(self, x):
        b = self.b(x)
        return self.fn(self.a(x) + b, b)


def test_every_op_has_a_case():
    assert sorted(OP_CASES) == sorted(OPS)


@pytest.mark.parametrize("op", sorted(OP_CASES))
def test_functional_op_exports_to_its_op_module(op):
    fn, args, dims = OP_CASES[op]
    shape = (4, *(8 if dims == 3 else 16,) * dims)
    model = _OpModel(fn, dims)
    data = spec.export(model, shape, op)  # verifies graph and output against the model
    entry = next(layer for layer in data["layers"] if layer.get("type") == op)
    assert entry.get("args", {}) == args
    rebuilt = spec.build(data)
    graph = rfalint.analyze(rebuilt, shape).graph
    assert graph.by_name(entry["name"]).op == op


# ----------------------------------------------------------------------------- refusals


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight)


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


class _Scalar(_Conv):
    def forward(self, x):
        return self.conv(x) * 0.5


class _PositionalClamp(_Conv):
    def forward(self, x):
        return self.conv(x).clamp(0, 6)


class _Index(_Conv):
    def forward(self, x):
        return self.conv(x)[:, :2]


class _Unused(_Conv):
    def __init__(self):
        super().__init__()
        self.aux = nn.Linear(4, 4)


class _TwoOutputs(_Conv):
    def forward(self, x):
        y = self.conv(x)
        return y, torch.relu(y)


class _FixedBatch(_Conv):
    def forward(self, x):
        return self.conv(x).view(1, -1)


class _BatchReshape(_Conv):
    def forward(self, x):
        return self.conv(x).reshape(-1, 2)


class _AlwaysDropout(_Conv):
    def forward(self, x):
        return F.dropout(self.conv(x), 0.5)


REFUSALS = {
    "functional_weights": (_Functional, "cannot export layer 'conv2d' (op conv2d): functional "
                                        "'conv2d' takes its weights as tensors; use the module "
                                        "(nn.Conv2d)"),
    "constant_operand": (_Scalar, "cannot export layer 'mul' (op mul): an operand of 'mul' is "
                                  "not computed from the input"),
    "positional_args": (_PositionalClamp, "cannot export layer 'clamp' (op clamp): its "
                                          "arguments were not recorded (min, max)"),
    "indexing": (_Index, "cannot export layer 'getitem' (op getitem): op 'getitem' has no spec "
                         "type"),
    "unused_parameters": (_Unused, "no layer of the exported spec holds aux.weight, aux.bias"),
    "two_outputs": (_TwoOutputs, "the model returns 2 tensors ('conv', 'relu')"),
    "fixed_batch": (_FixedBatch, "on a batch of 2 the exported spec gives shape (2, 784), the "
                                 "model (1, 1568)"),
    "reshape_across_batch": (_BatchReshape, "cannot export layer 'reshape' (op reshape): it "
                                            "reshapes (1, 4, 14, 14) -> (392, 2) across the "
                                            "batch dimension"),
    "dropout_in_eval": (_AlwaysDropout, "cannot export layer 'dropout' (op dropout): argument "
                                        "training=True has no spec form"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_export_refuses_what_a_spec_cannot_express(case):
    cls, message = REFUSALS[case]
    with pytest.raises(ExportError) as info:
        spec.export(cls(), (3, 16, 16))
    assert message in str(info.value)


def test_export_refuses_fixtures_it_cannot_express():
    with pytest.raises(ExportError, match="reads tensor values"):
        spec.export(fixture_model("functional_net"), (3, 32, 32))
    with pytest.raises(ExportError, match=r"layer 'cbam1\.sa\.max' \(op max\): it returns 2 "
                                          r"tensors"):
        spec.export(fixture_model("cbam_net"), (3, 32, 32))
