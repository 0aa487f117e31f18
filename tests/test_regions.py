"""Where receptive fields lie (docs/method.md §4): effective padding P, the region of a
unit, exact unions of offset paths, and the misaligned-merge rule, against published
values and the gradient-support oracle."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rfalint
from rfalint.errors import ModelError, UsageError
from rfalint.rules import get_rule
from oracle import gradient_supports_at

from conftest import fixture_model
from clihelp import run as run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def test_vgg16_features_match_distill():
    """Araujo et al. (Distill 2019) list VGG16: RF 212, effective stride 32, padding 90."""
    analysis = rfalint.analyze(fixture_model("vgg16"), (3, 32, 32))
    final = analysis.rf_final
    assert (final.r_max, final.jump, final.eff_padding) == ((212, 212), (32, 32), (90, 90))
    assert rfalint.rf_region(analysis, analysis.border.end, 0) == ((-90, 121),) * 2


def test_focus_stem_union_spans_six():
    model = fixture_model("focus_stem")
    analysis = rfalint.analyze(model, (3, 64, 64))
    rf = analysis.rfs[analysis.graph.by_name("stem.conv.0").id]
    assert rf.r_max == (6, 6) and rf.r_min == (5, 5) and rf.eff_padding == (2, 2)
    [(unit, support)] = gradient_supports_at(model, (3, 40, 40), ["stem.conv.0"],
                                             ["centre"])["stem.conv.0"]
    assert support.extent == (6, 6)
    assert rf.region_of(unit) == tuple(zip(support.lo, support.hi))
    finding = [f for f in rfalint.check(model, (3, 64, 64), cost=False).findings
               if f.code == "RFA106"]
    assert [(f.severity.value, f.layer) for f in finding] == [("info", "stem.cat")]
    assert "+1 px (+0.5 cells)" in finding[0].message


class _Rolled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.b(torch.roll(self.a(x), 1, dims=-1)).mean((2, 3))


def test_unknown_op_makes_padding_unknown_not_zero(tmp_path):
    analysis = rfalint.analyze(_Rolled(), (3, 16, 16))
    graph = analysis.graph
    assert analysis.rfs[graph.by_name("a").id].eff_padding == (1, 1)
    assert analysis.rfs[graph.by_name("b").id].eff_padding is None
    assert rfalint.rf_region(analysis, "b", 0) is None
    result = rfalint.check(_Rolled(), (3, 16, 16), cost=False)
    from rfalint.report import to_dict
    data = to_dict(result)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert layers["a"]["eff_padding"] == [1, 1] and layers["b"]["eff_padding"] is None
    assert data["summary"]["eff_padding_final"] is None
    assert "RFA201" in [f["code"] for f in data["findings"]]
    from rfalint.visual import FORMATS
    dot = FORMATS["dot"](analysis)
    assert "out 16, r 3, S 1, P 1" in dot and "out 16, r 5, S 1, P ?" in dot


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_pad_modules_even_same_padding_and_uneven_adaptive_pool():
    """ZeroPad2d pads (left, right, top, bottom); padding="same" puts the odd pixel of an
    even kernel at the end; an uneven adaptive pool leaves offsets unknown."""
    net = nn.Sequential(nn.ZeroPad2d((2, 0, 1, 0)), nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 4, padding="same"),
                        nn.AdaptiveAvgPool2d(5), nn.Conv2d(1, 1, 1))
    analysis = rfalint.analyze(net, (1, 24, 24))
    assert analysis.rfs[2].eff_padding == (1, 2)
    assert analysis.rfs[3].eff_padding == (2, 3) and analysis.rfs[3].r_max == (6, 6)
    [(unit, support)] = gradient_supports_at(net, (1, 24, 24), ["2"], ["centre"])["2"]
    assert rfalint.rf_region(analysis, "2", unit) == tuple(zip(support.lo, support.hi))
    assert analysis.rfs[5].eff_padding is None


def test_rf_region_errors():
    analysis = rfalint.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), (3, 9, 9))
    assert rfalint.rf_region(analysis, "1", -1) == ((4, 8), (4, 8))
    with pytest.raises(UsageError, match="no node"):
        rfalint.rf_region(analysis, "nope", 0)
    with pytest.raises(UsageError, match="outside"):
        rfalint.rf_region(analysis, "1", (0, 5))


def test_cli_columns_and_json(tmp_path):
    model = tmp_path / "m.py"
    model.write_text("import torch.nn as nn\n"
                     "def net():\n"
                     "    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, padding=1))\n")
    text = run_cli("check", str(model), "--res", "16", "--no-cost", "--columns", "P,S")
    assert text.code == 0, text.err
    header = next(line for line in text.out.splitlines() if "r_max" in line)
    assert header.index(" P ") < header.index(" S ")
    row = next(line for line in text.out.splitlines() if line.lstrip("│ ").startswith("1 "))
    assert [cell.strip() for cell in row.split("│")[7:9]] == ["3", "2"]
    assert " P " not in next(line for line in run_cli("check", str(model), "--res", "16",
                                                      "--no-cost").out.splitlines()
                              if "r_max" in line)
    data = json.loads(run_cli("check", str(model), "--res", "16", "--format", "json",
                              "--no-cost").out)
    assert data["summary"]["eff_padding_final"] == [3, 3]
    assert data["summary"]["jump_final"] == [2, 2]
    assert [layer["eff_padding"] for layer in data["layers"]] == [[1, 1], [3, 3]]
    bad = run_cli("check", str(model), "--res", "16", "--columns", "Q")
    assert bad.code == 2 and bad.err.count("\n") == 1
    assert run_cli("check", str(model), "--res", "16", "--columns", "P", "--format", "json").code == 2


# --------------------------------------------------------------------------- properties

CONV = {1: nn.Conv1d, 2: nn.Conv2d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
LINEAR = {1: "linear", 2: "bilinear"}


class Pad(nn.Module):
    """F.pad with (leading, trailing) per spatial axis, negative = crop."""

    def __init__(self, pads):
        super().__init__()
        self.pads = [p for pair in reversed(pads) for p in pair]

    def forward(self, x):
        return F.pad(x, self.pads)


class Slice(nn.Module):
    def __init__(self, start, step, dims):
        super().__init__()
        self.index = (Ellipsis,) + (slice(start, None, step),) * dims

    def forward(self, x):
        return x[self.index]


layer_specs = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 2), st.integers(1, 2),
              st.integers(0, 3)),
    st.tuples(st.just("pad"), st.integers(-2, 3), st.integers(-2, 3), st.integers(-2, 3),
              st.integers(-2, 3)),
    st.tuples(st.just("slice"), st.integers(0, 2), st.integers(1, 3), st.just(0), st.just(0)),
    st.tuples(st.sampled_from(["max", "avg"]), st.integers(2, 3), st.integers(1, 3),
              st.integers(0, 1), st.booleans()),
    st.tuples(st.sampled_from(["nearest", "linear"]), st.integers(2, 3), st.just(0), st.just(0),
              st.just(0)),
    st.tuples(st.just("convT"), st.integers(2, 4), st.integers(1, 2), st.integers(0, 2),
              st.just(0)),
)


def build(dims: int, specs) -> nn.Sequential:
    layers = []
    for kind, a, b, c, e in specs:
        if kind == "conv":  # kernel a, stride b, dilation c, padding e (clamped to the footprint)
            layers.append(CONV[dims](2, 2, a, stride=b, dilation=c, padding=min(e, c * (a - 1))))
        elif kind == "pad":  # leading/trailing per axis, asymmetric and negative
            layers.append(Pad([(a, b), (c, e)][:dims]))
        elif kind == "slice":
            layers.append(Slice(a, b, dims))
        elif kind in ("max", "avg"):  # kernel a, stride b, padding c, ceil_mode e
            pool = MAXPOOL if kind == "max" else AVGPOOL
            layers.append(pool[dims](a, b, padding=min(c, a // 2), ceil_mode=e))
        elif kind == "convT":  # kernel a >= stride b (every output reads an input), padding c
            layers.append(CONVT[dims](2, 2, max(a, b), stride=b, padding=min(c, max(a, b) - 1)))
        else:
            mode = "nearest" if kind == "nearest" else LINEAR[dims]
            layers.append(nn.Upsample(scale_factor=a, mode=mode))
    return nn.Sequential(*layers)


def _check_against_oracle(net: nn.Module, shape: tuple[int, ...], names: list[str], nodes,
                          period: int):
    """The region of each node ``nodes(analysis)`` (the output of module ``names[i]``) at
    the centre unit and the next ``period - 1`` units equals the oracle's gradient
    support; returns the analysis."""
    try:
        analysis = rfalint.analyze(net, shape)
    except ModelError:
        assume(False)  # a feature map collapsed at this size
    ids = nodes(analysis)
    out = analysis.graph[ids[-1]].spatial_out
    units = [tuple((n - 1) // 2 + i for n in out) for i in range(period)]
    assume(all(u < n for u, n in zip(units[-1], out)))
    measured = gradient_supports_at(net, shape, names, units)
    for name, node in zip(names, ids):
        rf = analysis.rfs[node]
        for unit, support in measured[name]:
            assume(not support.clipped)  # the field reaches the image border at this size
            assert rfalint.rf_region(analysis, node, unit) == tuple(zip(support.lo, support.hi))
            assert max(support.extent) <= max(rf.r_max)
    return analysis


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.filter_too_much])
@given(dims=st.sampled_from([1, 2]), specs=st.lists(layer_specs, min_size=1, max_size=6))
def test_random_stack_regions_match_oracle(dims, specs):
    net = build(dims, specs)
    down = math.prod(b for kind, _, b, *_ in specs if kind in ("conv", "slice", "max", "avg"))
    up = math.prod(a for kind, a, *_ in specs if kind in ("nearest", "linear")) * \
        math.prod(b for kind, _, b, *_ in specs if kind == "convT")
    size = 12 * down + 40
    _check_against_oracle(net, (2,) + (size,) * dims, [str(len(specs) - 1)],
                          lambda analysis: analysis.graph.outputs, min(up, 6))


class Branches(nn.Module):
    """Two conv branches shifted by F.pad so that their sizes match, then added."""

    def __init__(self, convs, leads, op):
        super().__init__()
        self.op = op
        self.paths = nn.ModuleList()
        for (k, d, p), lead in zip(convs, leads):
            p = min(p, d * (k - 1))
            trail = d * (k - 1) - 2 * p - lead  # back to the input size
            self.paths.append(nn.Sequential(nn.Conv2d(1, 1, k, dilation=d, padding=p),
                                            Pad([(lead, trail), (lead, trail)])))
        self.out = nn.Identity()

    def forward(self, x):
        a, b = (path(x) for path in self.paths)
        return self.out(torch.cat([a, b], 1) if self.op == "cat" else a + b)


def _merge_operands(analysis) -> list[int]:
    merge = next(n for n in analysis.graph if n.op in ("add", "cat"))
    return [*merge.inputs, analysis.graph.outputs[0]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convs=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(0, 3)),
                      min_size=2, max_size=2),
       leads=st.lists(st.integers(-2, 3), min_size=2, max_size=2),
       op=st.sampled_from(["add", "cat"]))
def test_random_branch_pairs_union_and_alignment(convs, leads, op):
    net = Branches(convs, leads, op)
    analysis = _check_against_oracle(net, (1, 40, 40), ["paths.0", "paths.1", "out"],
                                     _merge_operands, 1)
    measured = gradient_supports_at(net, (1, 40, 40), ["paths.0", "paths.1", "out"], ["centre"])
    (_, a), (_, b), (_, union) = (measured[n][0] for n in ("paths.0", "paths.1", "out"))
    assert analysis.rfs[len(analysis.graph) - 1].r_max == union.extent  # the exact union
    aligned = all(la + ha == lb + hb for la, ha, lb, hb in zip(a.lo, a.hi, b.lo, b.hi))
    findings = list(get_rule("RFA106").check(analysis))
    assert (findings == []) == aligned
