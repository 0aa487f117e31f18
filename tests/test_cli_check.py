"""`rfalint check` end to end: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rfalint.cli import main

from clihelp import run
from conftest import FIXTURES, ROOT


def run_cli(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["rfalint", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


TINY = """
    import torch.nn as nn

    def tiny(depth=3, width=4):
        layers = [nn.Conv2d(3, width, 3, padding=1)]
        layers += [nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 1)]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2))
"""


def test_vgg16_text_report_and_exit_code(capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "check", str(FIXTURES / "vgg16.py"), "--res", "32")
    assert code == 1, err
    assert "features.24 #8  << b_min" in out
    assert "RFA101" in out and "input r_min 44 > 32 px" in out


def test_json_report_fields_and_determinism(capsys, monkeypatch):
    args = ("check", str(FIXTURES / "resnet18.py"), "--res", "32", "--format", "json",
            "--arg", "num_classes=10")
    code, out, _ = run_cli(capsys, monkeypatch, *args)
    assert code == 1
    report = json.loads(out)
    assert report["schema_version"] == 1
    assert report["input_shape"] == [3, 32, 32]
    assert report["border"]["b_min"] == "layer3.1.conv1" and report["border"]["b_max"] == "layer1.1.conv2"
    assert report["summary"]["rf_max_final"] == [435, 435]
    conv1 = next(layer for layer in report["layers"] if layer["name"] == "conv1")
    assert conv1 == {**conv1, "type": "Conv2d", "out_shape": [64, 16, 16], "r_min": [7, 7],
                     "r_max": [7, 7], "status": "productive"}
    statuses = {layer["status"] for layer in report["layers"]}
    assert statuses == {"productive", "critical", "unproductive", "head"}
    assert "layer4.1.conv2" in report["tail"]
    assert report["layers"][-1]["name"] == "fc" and report["layers"][-1]["status"] == "head"
    assert {f["code"] for f in report["findings"]} >= {"RFA101", "RFA102", "RFA103"}
    assert all(set(f) >= {"code", "severity", "layer", "message"} for f in report["findings"])
    assert run_cli(capsys, monkeypatch, *args)[1] == out


def test_clean_model_exits_zero_and_fail_on(capsys, monkeypatch, tmp_path):
    model = write(tmp_path, "tiny.py", TINY)
    code, out, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "8")
    assert code == 0 and "b_min: none" in out
    code, _, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "8", "--arg", "depth=6")
    assert code == 1
    code, _, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "8", "--arg", "depth=6",
                         "--fail-on", "never")
    assert code == 0
    code, _, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "64", "--fail-on", "warning")
    assert code == 1  # under-coverage is a warning


def test_target_forms(capsys, monkeypatch, tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(TINY) + "\nclass Other(nn.Module):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, monkeypatch, "check", "mypkg.models:tiny", "--res", "8", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["model"] == "mypkg.models:tiny"
    code, out, _ = run_cli(capsys, monkeypatch, "check", "mypkg/models.py:tiny", "--res", "12x8",
                           "--format", "json")
    report = json.loads(out)
    assert report["input_shape"] == [3, 12, 8]


def test_non_square_input_and_channels(capsys, monkeypatch, tmp_path):
    model = write(tmp_path, "gray.py", TINY.replace("nn.Conv2d(3,", "nn.Conv2d(1,"))
    code, out, err = run_cli(capsys, monkeypatch, "check", f"{model}:tiny", "--res", "224x160",
                             "--in-channels", "1", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["input_shape"] == [1, 224, 160]
    assert report["summary"]["rf_max_final"] == [7, 7]


def test_conv1d_and_conv3d_targets(capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "check", str(FIXTURES / "audio1d.py"), "--res", "16000",
                             "--format", "json")
    assert code in (0, 1), err
    assert json.loads(out)["input_shape"][1:] == [16000]
    code, out, err = run_cli(capsys, monkeypatch, "check", str(FIXTURES / "video3d.py"), "--res", "16x32x32",
                             "--format", "json")
    assert code in (0, 1), err
    assert len(json.loads(out)["summary"]["rf_max_final"]) == 3


BAD_INPUTS = {
    "missing path": (["check", "nope/missing.py", "--res", "32"], "no such file"),
    "res zero": (["check", "{tiny}", "--res", "0"], "N, HxW or DxHxW with positive integers"),
    "res negative": (["check", "{tiny}", "--res", "-3"], "N, HxW or DxHxW with positive integers"),
    "res text": (["check", "{tiny}", "--res", "abc"], "N, HxW or DxHxW with positive integers"),
    "no res": (["check", "{tiny}"], "--res is required"),
    "syntax error": (["check", "{syntax}", "--res", "32"], "syntax.py:3: error importing"),
    "import error": (["check", "{importerr}", "--res", "32"], "importerr.py:2: error importing"),
    "no model": (["check", "{empty}", "--res", "32"], "defines no nn.Module"),
    "ambiguous": (["check", "{two}", "--res", "32"], "several models found (A, B); pick one"),
    "unknown name": (["check", "{tiny}:tinny", "--res", "32"], "did you mean 'tiny'"),
    "wrong arg": (["check", "{tiny}", "--res", "32", "--arg", "dept=3"], "wrong arguments for tiny"),
    "bad arg syntax": (["check", "{tiny}", "--res", "32", "--arg", "depth"], "--arg expects key=value"),
    "too small": (["check", "{strided}", "--res", "4"], "too small for this model: the feature map collapses at '1'"),
    "forward raises": (["check", "{raises}", "--res", "8"], "forward raised ValueError at 'the top-level forward': nope"),
    "unknown module": (["check", "nosuchpkg.models:net", "--res", "8"], "no module named 'nosuchpkg'"),
    "bad fail-on": (["check", "{tiny}", "--res", "8", "--fail-on", "fatal"], "--fail-on must be one of"),
    "unknown rule": (["rule", "RFA999"], "unknown rule"),
    "directory": (["check", "{dir}", "--res", "32"], "is a directory"),
    "sys.exit at import": (["check", "{exits}", "--res", "32"], "error importing"),
    "sys.exit in forward": (["check", "{exits_forward}", "--res", "8"], "called sys.exit(3)"),
    "unknown command": (["bogus"], "No such command 'bogus'"),
    "missing argument": (["rule"], "Missing argument"),
    "unknown option": (["check", "{tiny}", "--res", "8", "--bogus"], "No such option: --bogus"),
    "bad cost counter": (["check", "{tiny}", "--res", "8", "--cost-counter", "abacus"],
                         "--cost-counter must be one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case, capsys, monkeypatch, tmp_path):
    files = {
        "tiny": write(tmp_path, "tiny.py", TINY),
        "syntax": write(tmp_path, "syntax.py", "import torch\n\ndef f(:\n    pass\n"),
        "importerr": write(tmp_path, "importerr.py", "import torch\nimport not_a_module_xyz\n"),
        "empty": write(tmp_path, "empty.py", "import torch.nn as nn\nX = 1\n"),
        "two": write(tmp_path, "two.py", "import torch.nn as nn\nclass A(nn.Module):\n    pass\n"
                                         "class B(nn.Module):\n    pass\n"),
        "strided": write(tmp_path, "strided.py", "import torch.nn as nn\ndef net():\n"
                                                 "    return nn.Sequential(*[nn.Conv2d(3, 3, 3, 2) for _ in range(3)])\n"),
        "dir": str(tmp_path),
        "exits": write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n"),
        "exits_forward": write(tmp_path, "exits_forward.py", "import sys\nimport torch.nn as nn\n"
                                                             "class Net(nn.Module):\n"
                                                             "    def forward(self, x):\n        sys.exit(3)\n"),
        "raises": write(tmp_path, "raises.py", "import torch.nn as nn\nclass Net(nn.Module):\n"
                                               "    def forward(self, x):\n        raise ValueError('nope')\n"),
    }
    args, expected = BAD_INPUTS[case]
    args = [a.format(**files) for a in args]
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rfalint: error:") and expected in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_debug_shows_the_traceback(tmp_path):
    model = write(tmp_path, "tiny.py", TINY)
    proc = subprocess.run([sys.executable, "-m", "rfalint", "check", model, "--res", "abc", "--debug"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_python_dash_m_and_rules_listing():
    proc = subprocess.run([sys.executable, "-m", "rfalint", "rules"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "RFA101" in proc.stdout and "unproductive-layer" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "rfalint", "rule", "RFA101"], capture_output=True, text=True)
    assert proc.returncode == 0 and "border layer" in proc.stdout


def test_cost_counter_choice(capsys, monkeypatch, tmp_path):
    model = write(tmp_path, "tiny.py", TINY)
    code, out, err = run_cli(capsys, monkeypatch, "check", model, "--res", "8", "--format", "json",
                             "--cost-counter", "rfalint-graph")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["cost_counter"] == "rfalint-graph"
    assert summary["macs"] == 3 * 4 * 9 * 64 + 2 * (4 * 4 * 9 * 64) + 4 * 2


def test_written_files_get_the_usual_mode(tmp_path):
    """Atomic writes go through mkstemp (0600); outputs must still be readable by others."""
    import os
    import stat

    from rfalint.fileio import write_atomic

    target = tmp_path / "out.txt"
    write_atomic(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_norms_and_activations_are_hidden_unless_all_nodes(capsys, monkeypatch, tmp_path):
    model = write(tmp_path, "bn.py", """
        import torch.nn as nn

        def net():
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        """)
    _, short, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "8", "--no-cost")
    _, every, _ = run_cli(capsys, monkeypatch, "check", model, "--res", "8", "--no-cost",
                          "--all-nodes")
    assert "BatchNorm2d" not in short and "ReLU" not in short
    assert "Conv2d" in short and "Linear" in short  # weighted conv and the head stay
    assert "BatchNorm2d" in every and "ReLU" in every


def test_input_channels_are_probed_only_when_the_first_conv_does_not_read_the_input(monkeypatch):
    """Focus stem: the first registered conv reads 4 x 3 stacked phases, so its 12 input
    channels fail; 3 is tried next and runs, with a note. A plain model runs one capture."""
    from rfalint import api
    captures = []
    real_capture = api.capture
    monkeypatch.setattr(api, "capture", lambda model, shape, **kwargs: (
        captures.append(shape), real_capture(model, shape, **kwargs))[1])
    focus = run("check", str(FIXTURES / "focus_stem.py"), "--res", "64", "--format", "json",
                "--fail-on", "never")
    assert focus.code == 0, focus.err
    assert json.loads(focus.out)["input_shape"] == [3, 64, 64]
    assert "ran with 3 input channels" in focus.err
    assert [shape[0] for shape in captures] == [12, 3]
    captures.clear()
    plain = run("check", str(FIXTURES / "vgg11.py"), "--res", "32", "--format", "json",
                "--fail-on", "never")
    assert plain.code == 0 and "note" not in plain.err
    assert captures == [(3, 32, 32)]


def test_a_channel_bug_inside_the_model_is_still_an_error(tmp_path):
    (tmp_path / "bug.py").write_text(
        "import torch.nn as nn\n"
        "def net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(16, 8, 3))\n")
    result = run("check", str(tmp_path / "bug.py"), "--res", "16")
    assert result.code == 2
    assert "expected input[1, 8, 14, 14] to have 16 channels" in result.err
