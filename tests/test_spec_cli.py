"""`rfalint export`: output file handling, and the exported spec checks like the model."""

from __future__ import annotations

import json

import yaml
from clihelp import project, run
from conftest import FIXTURES

import rfalint.spec as spec


def test_export_to_stdout_reads_back_as_a_spec():
    result = run("export", str(FIXTURES / "resnet18.py"), "--res", "32", "--arg", "stem=cifar",
                 "--arg", "width=8")
    assert result.code == 0, result.err
    assert result.out.startswith("# exported by rfalint ")
    assert f"from {FIXTURES / 'resnet18.py'} --arg stem=cifar --arg width=8 at input 3x32x32" \
        in result.out.splitlines()[0]
    data = yaml.safe_load(result.out)
    assert data["name"] == "resnet18" and data["input"] == {"channels": 3, "size": [32, 32]}
    assert data["layers"][0]["args"]["kernel_size"] == 3  # the Cifar stem
    spec.loads(result.out)


def test_export_file_then_check_gives_the_same_report(tmp_path):
    out = tmp_path / "net.yaml"
    result = run("export", str(FIXTURES / "vgg11.py"), "--res", "32", "-o", str(out))
    assert result.code == 0 and result.out == "" and out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["net.yaml"]  # no temp file left behind
    from_yaml = run("check", str(out), "--res", "32", "--format", "json", "--no-cost")
    from_py = run("check", str(FIXTURES / "vgg11.py"), "--res", "32", "--format", "json",
                  "--no-cost")
    assert from_yaml.code == from_py.code == 1
    a, b = json.loads(from_yaml.out), json.loads(from_py.out)
    for key in ("layers", "sequence", "border", "tail", "findings"):
        assert a[key] == b[key], key
    assert a["model"] == str(out)


def test_export_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "net.yaml"
    out.write_text("keep me\n")
    result = run("export", str(FIXTURES / "vgg11.py"), "--res", "32", "-o", str(out))
    assert result.code == 2 and "exists; pass --force" in result.err
    assert out.read_text() == "keep me\n"
    result = run("export", str(FIXTURES / "vgg11.py"), "--res", "32", "-o", str(out), "--force")
    assert result.code == 0 and out.read_text().startswith("# exported by rfalint")


def test_export_never_overwrites_its_input(tmp_path):
    source = tmp_path / "net.yaml"
    source.write_text((FIXTURES / "vgg11.yaml").read_text())
    before = source.read_text()
    result = run("export", str(source), "--res", "32", "-o", str(source), "--force")
    assert result.code == 2 and "refusing to overwrite an input file" in result.err
    assert source.read_text() == before


def test_export_of_a_hand_written_spec_flattens_it(tmp_path):
    out = tmp_path / "flat.yaml"
    result = run("export", str(FIXTURES / "vgg11.yaml"), "--res", "32", "-o", str(out))
    assert result.code == 0, result.err
    data = yaml.safe_load(out.read_text())
    assert "blocks" not in data
    assert data["layers"][0]["name"] == "stage1.0.conv"


def test_export_errors_are_one_line_exit_2(tmp_path):
    root = project(tmp_path / "p")
    result = run("export", f"{root / 'models.py'}:Residual", "--res", "8", "-o",
                 str(tmp_path / "out.yaml"))
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "rfalint: error: the model's forward reads tensor values (the capture had to run it on "
        "real data: data-dependent control flow or .item()), which a spec cannot express"]
    assert not (tmp_path / "out.yaml").exists()
    result = run("export", str(FIXTURES / "vgg11.py"), "-o", str(tmp_path / "x.yaml"))
    assert result.code == 2 and "cannot infer the input size: give --res" in result.err


def test_export_in_channels(tmp_path):
    result = run("export", str(FIXTURES / "audio1d.py"), "--res", "4000", "--in-channels", "1",
                 "--arg", "width=4")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["input"] == {"channels": 1, "size": [4000]}


def test_export_without_res_infers_the_input_size(tmp_path):
    (tmp_path / "sized.py").write_text(
        "import torch.nn as nn\n\n"
        "class Sized(nn.Module):\n"
        "    default_cfg = {'input_size': (3, 20, 12)}\n\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n\n\n"
        "def bare():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3))\n")
    sized = run("export", str(tmp_path / "sized.py:Sized"))
    assert sized.code == 0, sized.err
    assert yaml.safe_load(sized.out)["input"] == {"channels": 3, "size": [20, 12]}
    from_spec = run("export", str(FIXTURES / "vgg11.yaml"))
    assert from_spec.code == 0 and yaml.safe_load(from_spec.out)["input"]["size"] == [32, 32]
    bare = run("export", str(tmp_path / "sized.py:bare"))
    assert bare.code == 2 and bare.err.count("\n") == 1
    assert "cannot infer the input size: give --res" in bare.err
    config = project(tmp_path / "proj", "[tool.rfalint]\nres = 12\n") / "pyproject.toml"
    configured = run("export", str(tmp_path / "sized.py:bare"), "--config", str(config))
    assert configured.code == 0, configured.err
    assert yaml.safe_load(configured.out)["input"]["size"] == [12, 12]
