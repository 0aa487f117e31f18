"""Exit codes 0/1/2 in every mode, and the shipped CI integrations run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clihelp import project, run

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["text", "json", "sarif", "github"]

CLEAN = ["models.py:shallow", "--res", "4"]
FAILING = ["models.py:Deep", "--res", "8"]
BROKEN = ["models.py:broken", "--res", "8"]


@pytest.fixture
def proj(tmp_path, monkeypatch):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def configure(root: Path, *models: str, extra: str = "") -> None:
    entries = "".join(f'[[tool.rfalint.models]]\ntarget = "models.py:{m}"\n' for m in models)
    (root / "pyproject.toml").write_text(f"[tool.rfalint]\nres = 8\n{extra}\n{entries}")


@pytest.mark.parametrize("fmt, statistics", [(fmt, False) for fmt in FORMATS]
                         + [("text", True), ("json", True)])  # --statistics: text/json only
def test_single_model_exit_codes(proj, fmt, statistics):
    extra = ["--statistics"] if statistics else []
    assert run("check", *CLEAN, "--format", fmt, *extra).code == 0
    assert run("check", *FAILING, "--format", fmt, *extra).code == 1
    assert run("check", *FAILING, "--format", fmt, "--fail-on", "never", *extra).code == 0
    broken = run("check", *BROKEN, "--format", fmt, *extra)
    assert broken.code == 2
    assert broken.out == "" and broken.err.startswith("rfalint: error: ")
    assert broken.err.count("\n") == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_config_driven_exit_codes(proj, fmt):
    configure(proj, "shallow", extra="fail-on = 'error'")
    assert run("check", "--format", fmt, "--res", "4").code == 0
    configure(proj, "shallow", "Deep")  # one of two models fails
    assert run("check", "--format", fmt).code == 1
    configure(proj, "Deep", "broken", "shallow")  # any error wins: 2, and no report
    result = run("check", "--format", fmt)
    assert result.code == 2 and result.out == ""
    assert "models.py:broken" in result.err


def test_fail_on_levels(proj):
    # shallow at 16 px: one warning (RFA104) and one info (RFA105), no error.
    assert run("check", "models.py:shallow", "--res", "16").code == 0
    assert run("check", "models.py:shallow", "--res", "16", "--fail-on", "warning").code == 1
    assert run("check", "models.py:shallow", "--res", "16", "--fail-on", "info").code == 1
    bad = run("check", "models.py:shallow", "--res", "16", "--fail-on", "sometimes")
    assert bad.code == 2 and "--fail-on must be one of" in bad.err


@pytest.mark.parametrize("args, message", [
    (["models.py:Deep"], "--res is required"),
    (["models.py:Deep", "--res", "0"], "--res must be"),
    (["missing.py", "--res", "8"], "no such file"),
    (["models.py:Deep", "--res", "1", "--in-channels", "0"], "--in-channels must be positive"),
    (["--statistics", "--format", "github", *FAILING], "--statistics works with"),
    (["--show-settings", "--select", "NOPE"], "matches no rule code"),
])
def test_usage_errors_are_exit_2(proj, args, message):
    result = run("check", *args)
    assert result.code == 2, result
    assert message in result.err and result.err.count("\n") == 1


def test_show_settings_and_write_baseline_exit_0_despite_findings(proj):
    configure(proj, "Deep")
    assert run("check").code == 1
    assert run("check", "--show-settings").code == 0
    assert run("check", "--write-baseline", "b.json").code == 0


# ---------------------------------------------------------------------- integrations


def _env() -> dict[str, str]:
    """PATH with this interpreter's scripts first, so ``rfalint`` is the installed command."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_pre_commit_hook_entry_runs(proj):
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook, = [h for h in hooks if h["id"] == "rfalint"]
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    configure(proj, "shallow", "Deep")
    command = shlex.split(hook["entry"]) + list(hook.get("args", []))
    proc = subprocess.run(command, cwd=proj, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "RFA101 [error] body.4" in proc.stdout
    assert "models.py:shallow" in proc.stdout  # every configured model was linted


def _workflow() -> dict:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    workflow, = [yaml.safe_load(b) for b in blocks if "jobs:" in b]
    return workflow


def test_github_actions_example_steps_run(proj):
    steps = [s for job in _workflow()["jobs"].values() for s in job["steps"]]
    annotate, report = [s["run"] for s in steps if "rfalint check" in s.get("run", "")]
    configure(proj, "shallow", "Deep")
    broken = project(proj / "broken")
    configure(broken, "broken")
    # GitHub runs `run:` steps with `bash -e {0}`. All three runs in parallel to save time.
    procs = [subprocess.Popen(["bash", "-e", "-c", command], cwd=cwd, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command, cwd in ((annotate, proj), (report, proj), (report, broken))]
    (annotations, err1), (_, err2), (_, err3) = [p.communicate(timeout=300) for p in procs]
    assert procs[0].returncode == 1, err1  # findings fail the annotation step
    assert "::error file=models.py," in annotations
    assert procs[1].returncode == 0, err2  # ... but the SARIF step still succeeds
    sarif = json.loads((proj / "rfalint.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    # On an error the installed command prints one line and exits 2, so the SARIF step
    # fails instead of uploading an empty report.
    assert procs[2].returncode != 0
    assert err3.startswith("rfalint: error: ") and err3.count("\n") == 1, err3
