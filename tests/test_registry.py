"""The op registry (rfalint.ops): one record per op, extensible per analysis or globally."""

from __future__ import annotations

import doctest
import importlib
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rfalint
from rfalint.analysis.cost import measure
from rfalint.capture import capture
from rfalint.ops import DEFAULT, ModuleRecord, OpRecord, Registry, register_module

from oracle import gradient_rf


class UnfoldConv(nn.Module):
    """A conv computed by ``F.unfold`` and a matmul, as a custom kernel would hide it: the
    capture sees ``unfold``, an op rfalint does not know."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = \
            kernel_size, stride, padding, dilation
        self.weight = nn.Parameter(torch.randn(c_out, c_in * kernel_size ** 2) / 10)

    def forward(self, x):
        n, _, h, w = x.shape
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        cols = F.unfold(x, k, dilation=d, padding=p, stride=s)
        out = self.weight @ cols
        size = [(z + 2 * p - d * (k - 1) - 1) // s + 1 for z in (h, w)]
        return out.view(n, -1, *size)


def _net() -> nn.Sequential:
    return nn.Sequential(UnfoldConv(3, 4, 3, padding=1), nn.ReLU(),
                         UnfoldConv(4, 4, 5, stride=2, padding=2), nn.ReLU(),
                         UnfoldConv(4, 4, 3, dilation=2, padding=2))


WINDOW = ("kernel_size", "stride", "padding", "dilation")


def test_a_registered_custom_module_is_analysed_exactly():
    net = _net()
    unknown = rfalint.analyze(net, (3, 64, 64))
    assert not unknown.complete  # unfold is not understood: said so, no number guessed
    registry = DEFAULT.copy()
    register_module(UnfoldConv, window=WINDOW, registry=registry)
    analysis = rfalint.analyze(net, (3, 64, 64), registry=registry)
    assert analysis.complete
    graph = analysis.graph
    convs = [n for n in graph if isinstance(n.module, UnfoldConv)]
    assert [n.name for n in convs] == ["0", "2", "4"]
    for node in convs:
        expected = gradient_rf(net, (3, 64, 64), node.name)
        assert analysis.rfs[node.id].r_max == expected, node.name
    # the third layer: 3 + (5-1)*1 + (3-1)*2*2 = 15
    assert analysis.rfs[convs[-1].id].r_max == (15, 15)


def test_registering_into_a_copy_leaves_the_default_untouched():
    registry = DEFAULT.copy()
    register_module(UnfoldConv, window=WINDOW, registry=registry)
    assert registry.module_record(UnfoldConv(3, 3, 3)) is not None
    assert DEFAULT.module_record(UnfoldConv(3, 3, 3)) is None
    assert not rfalint.analyze(_net(), (3, 32, 32)).complete


def test_registered_window_costs_macs_like_the_conv_it_is():
    registry = DEFAULT.copy()
    register_module(UnfoldConv, window=WINDOW, registry=registry)
    custom = UnfoldConv(3, 8, 3, stride=2, padding=1)
    reference = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    shape = (3, 32, 32)
    cost = measure(custom, capture(custom, shape, registry=registry), counter="rfalint-graph")
    expected = measure(reference, capture(reference, shape), counter="rfalint-graph")
    assert cost.macs_total == expected.macs_total == 16 * 16 * 8 * 3 * 9
    assert cost.skipped_ops == {}
    assert cost.params_total == expected.params_total


def test_own_mac_counter_and_pointwise_modules():
    class FusedAct(nn.Module):
        def forward(self, x):
            return torch.special.expit(x) * x  # an op rfalint does not know

    registry = DEFAULT.copy()
    register_module(FusedAct, pointwise=True, registry=registry)
    register_module(UnfoldConv, window=WINDOW, registry=registry,
                    macs=lambda node, inputs: 7 * math.prod(node.out_shape))
    net = nn.Sequential(UnfoldConv(3, 2, 3), FusedAct())
    graph = capture(net, (3, 8, 8), registry=registry)
    assert [n.op for n in graph] == ["input", "UnfoldConv", "FusedAct"]
    assert measure(net, graph, counter="rfalint-graph").macs == [0, 7 * 2 * 6 * 6, 0]


def test_register_module_rejects_what_it_cannot_mean():
    with pytest.raises(ValueError, match="either window"):
        register_module(UnfoldConv, registry=DEFAULT.copy())
    with pytest.raises(ValueError, match="window takes"):
        register_module(UnfoldConv, window=("kernel",), registry=DEFAULT.copy())
    with pytest.raises(ValueError, match="kind must be"):
        register_module(UnfoldConv, window=WINDOW, kind="deformable", registry=DEFAULT.copy())
    with pytest.raises(ValueError, match="no op 'nope'"):
        Registry().add_module(ModuleRecord(UnfoldConv, "nope", lambda m: {}))


def test_every_name_resolves_to_one_record():
    """Each op is declared once; no alias hides an op of its own (the old table had ten
    functional keys that its alias map made unreachable)."""
    names = [record.name for record in DEFAULT]
    assert len(names) == len(set(names))
    aliases = [alias for record in DEFAULT for alias in record.aliases]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(names)
    for record in DEFAULT:
        assert DEFAULT.resolve(record.name) is record
        for alias in record.aliases:
            assert DEFAULT.resolve(alias) is record
    assert DEFAULT.resolve("__iadd__").name == "add"
    assert DEFAULT.resolve("relu_").name == "relu"
    assert DEFAULT.resolve("clip").name == "clamp"


def test_every_module_record_points_at_a_declared_op():
    for cls in DEFAULT.module_types():
        record = DEFAULT._modules[cls]
        assert DEFAULT.op(record.op) is not None, cls


def test_a_user_declared_op_is_understood():
    registry = DEFAULT.copy()
    from rfalint.capture import geometry
    rfalint.ops.register_op(OpRecord("special_expit", geometry.pointwise, shape_preserving=True),
                            registry)

    class Net(nn.Module):
        def forward(self, x):
            return torch.special.expit(x)

    assert not rfalint.analyze(Net(), (3, 8, 8)).complete
    assert rfalint.analyze(Net(), (3, 8, 8), registry=registry).complete


def test_spec_import_does_not_change_the_registry():
    code = ("from rfalint.ops import DEFAULT\n"
            "before = (len(list(DEFAULT)), len(DEFAULT.module_types()))\n"
            "import rfalint.spec, rfalint.fix\n"
            "assert before == (len(list(DEFAULT)), len(DEFAULT.module_types())), before\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", ["rfalint.ops", "rfalint.ops.records", "rfalint.api",
                                    "rfalint.capture.tracer", "rfalint.analysis.cost"])
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried and not failures


LAYERS = '''
import torch, torch.nn as nn, torch.nn.functional as F

class UnfoldConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride=1):
        super().__init__()
        self.k, self.stride = k, stride
        self.weight = nn.Parameter(torch.ones(c_out, c_in * k * k))

    def forward(self, x):
        n, _, h, w = x.shape
        cols = F.unfold(x, self.k, stride=self.stride)
        size = [(z - self.k) // self.stride + 1 for z in (h, w)]
        return (self.weight @ cols).view(n, -1, *size)
'''

MODEL = '''
import torch.nn as nn
from rfalint_test_layers import UnfoldConv

def net():
    return nn.Sequential(UnfoldConv(3, 4, 3), nn.ReLU(), UnfoldConv(4, 4, 3, stride=2))
'''


def test_custom_layers_declared_in_the_config(tmp_path):
    from clihelp import run
    (tmp_path / "rfalint_test_layers.py").write_text(LAYERS)
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "rfalint.toml").write_text(
        '[[models]]\ntarget = "model.py:net"\nres = 32\n\n'
        '[[modules]]\ntype = "rfalint_test_layers:UnfoldConv"\n'
        'window = { kernel_size = "k", stride = "stride" }\n')
    import json
    result = run("check", "--config", str(tmp_path / "rfalint.toml"), "--format", "json",
                 "--fail-on", "never")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    layers = {layer["name"]: layer for layer in report["models"][0]["layers"]}
    assert layers["2"]["r_max"] == [5, 5]  # 3 + (3 - 1) * 1
    assert layers["2"]["type"] == "UnfoldConv"
    shown = run("check", "--config", str(tmp_path / "rfalint.toml"), "--show-settings")
    assert 'type = "rfalint_test_layers:UnfoldConv"' in shown.out
    swept = run("sweep", f"{tmp_path / 'model.py'}:net", "--res", "8,16", "--format", "json",
                "--config", str(tmp_path / "rfalint.toml"))
    assert swept.code == 0, swept.err
    rows = json.loads(swept.out)["rows"]
    # 3x3 then 3x3 stride 2: final r 5, so 8 px is not covered and 16 px neither
    assert [row["rf_max_final"] for row in rows] == [[5, 5], [5, 5]]


@pytest.mark.parametrize("entry, message", [
    ('type = "layers.py:X"\nwindow = ["kernel_size"]', "'type' must be pkg.module:Class"),
    ('type = "m:X"', "give either 'window' or 'pointwise = true'"),
    ('type = "m:X"\nwindow = ["kernel_size"]\nkind = "deform"', "'kind' must be one of"),
    ('type = "m:X"\nwindow = 3', "'window' must be a list"),
    ('type = "m:X"\npointwise = true\nsize = 1', "unknown key 'size'"),
    ('type = "rfalint_no_such_module:X"\npointwise = true', "no module named"),
])
def test_bad_module_declarations_are_one_line_errors(tmp_path, entry, message):
    from clihelp import run
    (tmp_path / "model.py").write_text("import torch.nn as nn\n"
                                       "def net():\n    return nn.Conv2d(3, 3, 3)\n")
    (tmp_path / "rfalint.toml").write_text(
        f'[[models]]\ntarget = "model.py:net"\nres = 8\n\n[[modules]]\n{entry}\n')
    result = run("check", "--config", str(tmp_path / "rfalint.toml"))
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1


def test_the_registry_is_reachable_from_the_package():
    code = ("import rfalint\n"
            "registry = rfalint.ops.DEFAULT.copy()\n"
            "assert rfalint.register_module is rfalint.ops.register_module\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
