"""User code that prints (at import, in ``__init__``, in ``forward``) must not corrupt
rfalint's machine output: for every command and format, stdout carries only rfalint's
own output and the user's prints go to stderr."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from clihelp import run

NOISY = textwrap.dedent('''
    import torch.nn as nn

    print("banner printed at import")


    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            print("building Noisy")
            self.body = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)])
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            print("forward shape", tuple(x.shape))
            return self.fc(self.body(x).mean((2, 3)))
''')


@pytest.fixture
def noisy(tmp_path):
    path = tmp_path / "noisy.py"
    path.write_text(NOISY)
    return str(path)


def _assert_prints_on_stderr(result):
    assert "banner printed at import" in result.err
    assert "forward shape" in result.err
    assert "banner" not in result.out and "forward shape" not in result.out


def test_check_json(noisy):
    result = run("check", noisy, "--res", "8", "--format", "json")
    assert result.code == 1
    assert json.loads(result.out)["border"]["b_min"] == "body.4"
    _assert_prints_on_stderr(result)


def test_check_sarif(noisy):
    result = run("check", noisy, "--res", "8", "--format", "sarif")
    assert json.loads(result.out)["version"] == "2.1.0"
    _assert_prints_on_stderr(result)


def test_check_github(noisy):
    result = run("check", noisy, "--res", "8", "--format", "github")
    assert result.out and all(line.startswith("::") for line in result.out.splitlines())
    _assert_prints_on_stderr(result)


def test_check_statistics_json(noisy):
    result = run("check", noisy, "--res", "8", "--format", "json", "--statistics")
    json.loads(result.out)
    _assert_prints_on_stderr(result)


def test_export_to_stdout(noisy):
    result = run("export", noisy, "--res", "8", "-o", "-")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["rfalint_spec"] == 1
    _assert_prints_on_stderr(result)


def test_fix_to_stdout(noisy):
    result = run("fix", noisy, "--res", "8", "--strategy", "truncate", "-o", "-")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["rfalint_spec"] == 1
    _assert_prints_on_stderr(result)


def test_graph_dot(noisy):
    result = run("graph", noisy, "--res", "8", "--format", "dot")
    assert result.out.startswith("digraph")
    _assert_prints_on_stderr(result)


def test_saturation_json(noisy):
    result = run("saturation", noisy, "--res", "8", "--data", "random", "--max-samples", "4",
                 "--format", "json")
    assert result.code == 0, result.err
    json.loads(result.out)
    _assert_prints_on_stderr(result)


C_LEVEL = textwrap.dedent('''
    import os
    import torch.nn as nn

    os.write(1, b"fd-1 banner at import\\n")


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)])

        def forward(self, x):
            os.write(1, b"fd-1 write in forward\\n")  # as a C extension's printf would
            return self.body(x)
''')


@pytest.mark.parametrize("args", [["check", "--format", "json"], ["sweep", "--format", "json"]])
def test_writes_to_file_descriptor_1_go_to_stderr(tmp_path, args):
    """Only a real process has a file descriptor 1 of its own: run the command."""
    import subprocess
    import sys
    (tmp_path / "cnet.py").write_text(C_LEVEL)
    command, *options = args
    proc = subprocess.run([sys.executable, "-m", "rfalint", command, str(tmp_path / "cnet.py"),
                           "--res", "8", *options], capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    json.loads(proc.stdout)
    assert "fd-1 banner at import" in proc.stderr and "fd-1 write in forward" in proc.stderr
    assert "fd-1" not in proc.stdout
