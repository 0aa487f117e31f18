"""rfalint fix: truncate, remove-stem, width, auto; verification, outputs and bad input."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import rfalint
import rfalint.fix as fix
import rfalint.spec as spec
from rfalint.errors import ModelError, UsageError
from rfalint.fix.emit_python import _writer, emit_python
from rfalint.spec.ops import OPS
from tests.conftest import FIXTURES, fixture_model

RFALINT = [sys.executable, "-m", "rfalint"]
RESNET = [str(FIXTURES / "resnet18.py"), "--res", "32", "--arg", "width=8"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RFALINT, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def vgg_truncated():
    return fix.fix(fixture_model("vgg16"), (3, 32, 32), "truncate", "vgg16")


def test_vgg16_truncate_keeps_seven_convs_and_the_head(vgg_truncated):
    layers = vgg_truncated.spec["layers"]
    convs = [layer["name"] for layer in layers if layer.get("type") == "Conv2d"]
    assert convs == ["features.0", "features.3", "features.7", "features.10", "features.14",
                     "features.17", "features.20"]
    assert [layer["type"] for layer in layers[-3:]] == ["AdaptiveAvgPool2d", "flatten", "Linear"]
    assert layers[-1]["args"] == {"in_features": 256, "out_features": 10}
    assert vgg_truncated.before.tail_convs == 6 and vgg_truncated.after.tail_convs == 0
    assert vgg_truncated.after.params < vgg_truncated.before.params
    assert vgg_truncated.after.r_max_final == (44, 44)


def test_truncated_spec_rechecks_clean_and_round_trips(vgg_truncated, tmp_path):
    path = tmp_path / "vgg.yaml"
    path.write_text(spec.dump(vgg_truncated.spec))
    proc = run("check", str(path), "--res", "32", "--no-cost", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = spec.export(spec.load(path), (3, 32, 32), "vgg16")
    assert again["layers"] == vgg_truncated.spec["layers"]


def test_resnet18_remove_stem_reaches_109_without_tail():
    result = fix.fix(fixture_model("resnet18", width=8), (3, 32, 32), "remove-stem", "r18")
    assert result.after.r_max_final == (109, 109) and result.after.tail_convs == 0
    conv1 = result.spec["layers"][0]
    assert conv1["name"] == "conv1" and conv1["args"]["kernel_size"] == 3
    assert "maxpool" not in [layer["name"] for layer in result.spec["layers"]]
    assert result.rewrite.fresh == {"conv1"}


def test_surviving_weights_are_bitwise_equal(tmp_path):
    model = fixture_model("resnet18", width=8)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    proc = run("fix", *RESNET, "--strategy", "remove-stem", "-o", "r.yaml", "--weights", "w.pt",
               "--save-weights", "r.pt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    old, new = model.state_dict(), torch.load(tmp_path / "r.pt", weights_only=True)
    assert set(new) == set(old)
    for key, value in new.items():
        if key.startswith("conv1."):
            assert value.shape != old[key].shape
        else:
            assert torch.equal(value, old[key]), key
    spec.load(tmp_path / "r.yaml").load_state_dict(new)


def test_truncate_transfer_copies_every_kept_tensor():
    model = fixture_model("resnet18", width=8)
    result = fix.fix(model, (3, 32, 32), "truncate", "r18")
    moved = fix.transfer(model.state_dict(), result.model, result.rewrite.fresh)
    old = model.state_dict()
    assert moved.fresh == 2  # fc.weight, fc.bias: Linear(32, 1000) is new
    for key, value in result.model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, old[key]), key


def test_emitted_python_runs_in_a_fresh_interpreter(tmp_path):
    proc = run("fix", *RESNET, "--strategy", "remove-stem", "--emit", "python", "-o", "net.py",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    source = (tmp_path / "net.py").read_text()
    assert "rfalint" not in source.split('"""', 2)[2]
    code = ("import sys, torch; sys.path.insert(0, '.'); import net; m = net.build().eval(); "
            "print(tuple(m(torch.zeros(2, *net.INPUT_SHAPE)).shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 1000)"


def test_every_spec_op_has_a_python_form():
    for op in OPS:
        _writer(op)


def test_width_halves_convs_and_keeps_classes():
    result = fix.fix(fixture_model("resnet18", width=16), (3, 32, 32), "width", "r18", factor=0.5)
    layers = {layer["name"]: layer for layer in result.spec["layers"]}
    assert layers["conv1"]["args"]["in_channels"] == 3
    assert layers["conv1"]["args"]["out_channels"] == 8
    assert layers["layer4.0.conv1"]["args"]["out_channels"] == 64
    assert layers["fc"]["args"] == {"in_features": 64, "out_features": 1000}
    assert result.after.params < result.before.params


def test_width_keeps_depthwise_groups_equal_to_channels():
    result = fix.fix(fixture_model("mobilenetv2"), (3, 32, 32), "width", "mbv2", factor=0.5)
    model = result.model
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_auto_prefers_by_params_or_macs():
    model = fixture_model("resnet18", width=8)
    by_params = fix.fix(model, (3, 32, 32), "auto", "r18", prefer="params")
    assert [c.strategy for c in by_params.candidates] == ["truncate", "remove-stem", "rebalance",
                                                          "reposition"]
    assert by_params.strategy == "truncate"
    stem = next(c for c in by_params.candidates if c.strategy == "remove-stem")
    assert by_params.after.params < stem.figures.params


def test_check_estimates_match_fix(vgg_truncated):
    result = rfalint.check(fixture_model("vgg16"), (3, 32, 32), "vgg16")
    truncate = next(c for c in result.candidates if c.strategy == "truncate")
    # Everything the fix table shows except the activation peak and the dIF sum, which only
    # fix measures.
    assert truncate.figures == replace(vgg_truncated.after, activation_peak=None, dif_sum=None)
    stem = next(c for c in result.candidates if c.strategy == "remove-stem")
    assert stem.figures is None and "no early downsampling" in stem.reason


def test_resnet18_estimates_equal_what_fix_produces(monkeypatch):
    """The estimates are derived from the analysed graph alone (no model is built, run or
    captured again), and on ResNet18 at 32 px they are exact for both tail strategies."""
    from rfalint.analysis.plan import estimate

    model = fixture_model("resnet18", width=8)
    result = rfalint.check(model, (3, 32, 32), "r18", counter="rfalint-graph")

    def no_forward(*args, **kwargs):
        raise AssertionError("the estimate ran a module")

    with monkeypatch.context() as patched:
        patched.setattr(torch.nn.Module, "__call__", no_forward)
        estimated = {c.strategy: c.figures for c in estimate(result.analysis, result.cost)}
    assert estimated == {c.strategy: c.figures for c in result.candidates}
    for strategy in ("truncate", "remove-stem"):
        done = fix.fix(model, (3, 32, 32), strategy, "r18")
        assert estimated[strategy] == replace(done.after, activation_peak=None, dif_sum=None), strategy
    assert estimated["remove-stem"].r_max_final == (109, 109)


def test_check_does_not_import_fix():
    code = ("import sys, rfalint; from rfalint.report import render_text, to_json; "
            "print(any(m.startswith('rfalint.fix') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_no_tail_means_nothing_to_fix(tmp_path):
    proc = run("fix", str(FIXTURES / "resnet18_cifar.py"), "--res", "32", "--arg", "width=8",
               "--strategy", "truncate", "-o", "out.yaml", cwd=tmp_path)
    assert proc.returncode == 0
    assert "nothing to fix" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfalint: error:"), proc.stderr
    return lines[0]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    (tmp_path / "exists.yaml").write_text("keep me")
    cases = [
        (["fix", str(FIXTURES / "vgg16.py"), "--res", "32", "--strategy", "remove-stem",
          "-o", "a.yaml"], "no early downsampling"),
        (["fix", str(FIXTURES / "unet.py"), "--res", "8", "--strategy", "truncate",
          "-o", "a.yaml"], "no linear classifier"),
        (["fix", *RESNET, "--strategy", "truncate", "-o", "a.yaml", "--weights", "bad.pt",
          "--save-weights", "b.pt"], "do not match the model"),
        (["fix", *RESNET, "--strategy", "truncate", "-o", "missing/a.yaml"], "does not exist"),
        (["fix", *RESNET, "--strategy", "truncate", "-o", "exists.yaml"], "--force"),
        (["fix", *RESNET, "--strategy", "truncate", "-o", str(FIXTURES / "resnet18.py"),
          "--force"], "input file"),
    ]
    for args, expected in cases:
        assert expected in _one_line_error(run(*args, cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "exists.yaml"]
    assert (tmp_path / "exists.yaml").read_text() == "keep me"


def test_stdout_output_is_the_spec(tmp_path):
    proc = run("fix", *RESNET, "--strategy", "truncate", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["layers"][-1]["name"] == "fc"


def test_verification_failure_is_a_model_error():
    with pytest.raises(ModelError):
        fix.verify(spec.parse(spec.export(fixture_model("resnet18", width=8), (3, 32, 32))),
                   (3, 32, 32), clean=True)


def test_width_needs_factor():
    with pytest.raises(UsageError):
        fix.fix(fixture_model("vgg11"), (3, 32, 32), "width", "vgg11")


def test_emitted_python_uses_torch_containers_and_loads_the_state_dict_strictly():
    model = fixture_model("resnet18", width=8).eval()
    source = emit_python(spec.export(model, (3, 32, 32), "r18"))
    assert "class Scope" not in source and "self.layer1 = nn.ModuleList([" in source
    assert "'conv1': nn.Conv2d(" in source  # a block is an nn.ModuleDict
    namespace: dict = {}
    exec(compile(source, "r18.py", "exec"), namespace)
    emitted = namespace["build"]().eval()
    emitted.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(emitted(x), model(x), atol=1e-5)


def test_remove_stem_estimate_refuses_what_it_cannot_recompute():
    """A classifier on a flattened map, and a window that adapts to the input size, are
    reported as 'n/a', never estimated from a stale size."""
    nn = torch.nn

    def stack(*tail):
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1),
                             *[nn.Conv2d(4, 4, 3, padding=1) for _ in range(5)], *tail)

    flat = rfalint.check(stack(nn.Flatten(), nn.Linear(4 * 4 * 4, 2)), (3, 8, 8),
                         counter="rfalint-graph")
    adaptive = rfalint.check(stack(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2)),
                             (3, 8, 8), counter="rfalint-graph")
    reasons = {name: {c.strategy: c.reason for c in result.candidates}["remove-stem"]
               for name, result in (("flat", flat), ("adaptive", adaptive))}
    assert "'6' (Flatten) reads a feature map whose size the rewrite changes" in reasons["flat"]
    assert "adapts its window to the input size" in reasons["adaptive"]
