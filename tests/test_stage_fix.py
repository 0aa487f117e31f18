"""fix --strategy rebalance | reposition | auto: layouts rewritten, built, run and re-checked."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import rfalint
import rfalint.fix as fix
import rfalint.spec as spec
from rfalint.analysis.stages import find_layout, find_stages
from rfalint.fix.reposition import _Model
from rfalint.errors import UsageError
from tests.conftest import FIXTURES, fixture_model

RFALINT = [sys.executable, "-m", "rfalint"]


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*RFALINT, *args], capture_output=True, text=True, cwd=cwd)


def round_trips(result, tmp_path, shape) -> None:
    """The YAML spec rebuilds the same layers, and the verified model loads its weights."""
    path = tmp_path / "out.yaml"
    path.write_text(spec.dump(result.spec))
    built = spec.load(path)
    built.load_state_dict(result.model.state_dict())
    assert spec.export(built, shape, result.spec["name"])["layers"] == result.spec["layers"]


@pytest.fixture(scope="module")
def vgg16_rebalanced():
    model = fixture_model("vgg16")
    for p in model.parameters():
        torch.nn.init.normal_(p)
    return model, fix.fix(model, (3, 32, 32), "rebalance", "vgg16")


def test_rebalance_vgg16_is_verified_and_keeps_surviving_weights(vgg16_rebalanced, tmp_path):
    model, result = vgg16_rebalanced
    assert result.before.params == 14_728_266 and result.after.params == 5_101_194
    assert result.after.macs == 369_824_768  # the paper's VGG16-opt: 370 MFLOPs (= MACs)
    assert result.rewrite.changes[-1] == "units per stage [2, 2, 3, 3, 3] -> [5, 4, 2, 1, 1]"
    assert "from stage 5 to stage 1: dIF 0.000" in result.rewrite.changes[0]
    moved = {"features.40", "features.37", "features.30", "features.27", "features.20"}
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in result.rewrite.fresh} >= moved
    old = model.state_dict()
    moved_state = fix.transfer(old, result.model, result.rewrite.fresh)
    for key, value in result.model.state_dict().items():
        layer = key.rsplit(".", 1)[0]
        if layer not in result.rewrite.fresh:
            assert torch.equal(value, old[key]), key
    assert moved_state.copied > 0 and moved_state.fresh > 0
    round_trips(result, tmp_path, (3, 32, 32))
    again = fix.fix(result.model, (3, 32, 32), "rebalance", "vgg16")
    assert again.rewrite is None and "no move" in again.note  # a fixed point


def test_rebalance_moves_residual_and_separable_blocks(tmp_path):
    resnet = fix.fix(fixture_model("resnet18_cifar", width=8), (3, 32, 32), "rebalance", "r18")
    assert resnet.rewrite.changes[0].startswith("moved residual block 'layer4.1.conv1' from "
                                                "stage 4 to stage 1")
    stages = find_stages(rfalint.analyze(resnet.model, (3, 32, 32)))
    assert [len(s.units) for s in stages] == [3, 2, 2, 1]
    assert [s.width for s in stages] == [8, 16, 32, 64]
    round_trips(resnet, tmp_path, (3, 32, 32))
    mobile = fix.fix(fixture_model("mobilenet_cifar"), (3, 32, 32), "rebalance", "mb")
    assert mobile.rewrite.changes[-1] == "units per stage [1, 2, 2, 6, 2] -> [3, 3, 3, 2, 2]"
    assert mobile.after.params == 2_238_794
    depthwise = [m for m in mobile.model.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)


@pytest.fixture(scope="module")
def resnet18_auto():
    return fix.fix(fixture_model("resnet18", width=8), (3, 32, 32), "auto", "r18", prefer="macs")


def test_reposition_resnet18_beats_remove_stem(resnet18_auto, tmp_path):
    by_name = {c.strategy: c for c in resnet18_auto.candidates}
    result = by_name["reposition"]
    assert resnet18_auto.before.tail_convs == 7 and result.figures.tail_convs == 0
    assert result.figures.r_max_final[0] >= 32
    assert result.figures.macs < by_name["remove-stem"].figures.macs
    assert (result.figures.macs, result.figures.params) == result.rewrite.expect
    assert any(line.startswith("stride 2 of 'layer2.0.conv1' moved to 'layer1.0.conv1'")
               for line in result.rewrite.changes)
    assert any("effective filter size" in line for line in result.rewrite.changes)
    round_trips(fix.FixResult("reposition", resnet18_auto.before, result.rewrite,
                              result.figures, result.model), tmp_path, (3, 32, 32))


def test_reposition_vgg16_search_leaves_no_tail():
    model = fixture_model("vgg16")
    analysis = rfalint.analyze(model, (3, 32, 32))
    space = _Model(model, analysis, find_layout(analysis))
    state, _ = space.evaluate(space.original)  # the analytic model reproduces the original
    assert space.fixed_macs + state.macs == 313_201_664 and state.last_in.r_min == (164, 164)
    best = space.search(None)
    # pools after conv 9 and after conv 13 (main counts the last 2x2 pool as a window)
    assert best.positions == (9, 13, 13, 13, 13)
    assert best.r_last_in == (32, 32) and best.r_final[0] >= 32


def test_reposition_vgg11_is_verified_against_its_prediction():
    result = fix.fix(fixture_model("vgg11"), (3, 32, 32), "reposition", "vgg11")
    assert result.after.tail_convs == 0
    assert (result.after.macs, result.after.params) == result.rewrite.expect


def test_auto_compares_four_strategies_with_dif_sums(resnet18_auto):
    result = resnet18_auto
    assert [c.strategy for c in result.candidates] == ["truncate", "remove-stem", "rebalance",
                                                       "reposition"]
    assert all(c.figures is not None and c.figures.dif_sum is not None
               for c in result.candidates)
    assert result.strategy == "truncate"  # fewest MACs without a tail
    assert result.after.tail_convs == 0


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfalint: error:"), proc.stderr
    return lines[0]


def test_layout_strategies_refuse_nets_without_stages(tmp_path):
    proc = run("fix", str(FIXTURES / "unet.py"), "--res", "32", "--strategy", "rebalance",
               cwd=tmp_path)
    assert "rebalance does not apply: the main path upsamples" in _one_line_error(proc)
    flat = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                               torch.nn.Conv2d(8, 8, 3, padding=1))
    with pytest.raises(fix.NotApplicable, match="reposition does not apply: the main path "
                                                "has no downsampling"):
        fix.fix(flat, (3, 16, 16), "reposition")
    with pytest.raises(fix.NotApplicable, match="within 2 x the MACs"):
        fix.fix(fixture_model("vgg11"), (3, 32, 32), "reposition", max_macs_ratio=2)
    with pytest.raises(UsageError, match="^theta goes with strategy rebalance"):
        fix.fix(flat, (3, 16, 16), "truncate", theta=0.5)  # the library names no flags
    proc = run("fix", str(FIXTURES / "unet.py"), "--res", "32", "--strategy", "truncate",
               "--max-macs-ratio", "2", cwd=tmp_path)
    assert "--max-macs-ratio goes with --strategy reposition" in _one_line_error(proc)


def test_emitted_python_of_a_layout_rewrite_runs(resnet18_auto, tmp_path):
    rewrite = next(c for c in resnet18_auto.candidates if c.strategy == "reposition").rewrite
    result = fix.FixResult("reposition", resnet18_auto.before, rewrite)
    (tmp_path / "net.py").write_text(fix.EMITTERS["python"](result, "resnet18.py"))
    net = rfalint.load_model(str(tmp_path / "net.py") + ":build").model.eval()
    assert tuple(net(torch.zeros(2, 3, 32, 32)).shape) == (2, 1000)


class _Block(torch.nn.Module):
    """A residual block without batch norm; strided blocks have a 1x1 projection."""

    def __init__(self, stride=1):
        super().__init__()
        self.a = torch.nn.Conv2d(8, 8, 3, stride=stride, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.p = torch.nn.Conv2d(8, 8, 1, stride=stride) if stride > 1 else None

    def forward(self, x):
        skip = self.p(x) if self.p is not None else x
        return torch.relu(skip + self.b(torch.relu(self.a(x))))


def test_reposition_adds_projections_where_a_stride_lands_on_an_identity_skip():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, stride=2, padding=3),
                              *[_Block(2 if i in (2, 4, 6) else 1) for i in range(8)],
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10))
    result = fix.fix(net, (3, 32, 32), "reposition", "tiny")
    assert result.before.tail_convs == 2 and result.after.tail_convs == 0
    assert result.after.macs < result.before.macs  # later strides: cheaper and no tail
    names = {layer["name"] for layer in result.spec["layers"]}
    assert {"1.shortcut_conv", "2.shortcut_conv", "8.shortcut_conv"} <= names  # no BN here
    assert not any(name.endswith("shortcut_bn") for name in names)
