"""Baselines: accept today's findings, fail only on new ones."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
from clihelp import project, run

from rfalint.baseline import Fingerprint, apply_baseline, fingerprint, load_baseline
from rfalint.config import check_models, load_settings
from rfalint.errors import UsageError
from rfalint.rules import Finding, Severity

CONFIG = """
    [tool.rfalint]
    res = 8
    [[tool.rfalint.models]]
    target = "models.py:Deep"
"""


@pytest.fixture
def proj(tmp_path, monkeypatch):
    project(tmp_path, CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def codes_and_layers(result) -> list[tuple[str, str | None]]:
    data = json.loads(result.out)
    return [(f["code"], f["layer"]) for m in data["models"] for f in m["findings"]]


def test_write_baseline_exits_0_and_is_deterministic(proj):
    assert run("check").code == 1
    result = run("check", "--write-baseline", "base.json")
    assert result.code == 0, result.err
    assert result.out == ""
    assert "wrote 3 finding fingerprints to base.json" in result.err
    text = (proj / "base.json").read_text()
    data = json.loads(text)
    assert data == {"rfalint_baseline": 1, "findings": [
        {"layer": "body.4", "model": "models.py:Deep", "resolution": [8, 8], "rule": "RFA101"},
        {"layer": "body.5", "model": "models.py:Deep", "resolution": [8, 8], "rule": "RFA101"},
        {"layer": "body.5", "model": "models.py:Deep", "resolution": [8, 8], "rule": "RFA105"},
    ]}
    assert run("check", "--write-baseline", "again.json").code == 0
    assert (proj / "again.json").read_text() == text
    assert not list(proj.glob(".*.tmp"))  # the atomic write leaves no temp file


def test_baseline_hides_accepted_findings(proj):
    run("check", "--write-baseline", "base.json")
    for fmt in ("text", "json", "sarif", "github"):
        result = run("check", "--baseline", "base.json", "--format", fmt)
        assert result.code == 0, (fmt, result.err)
        assert "3 findings accepted by the baseline base.json are not shown" in result.err
    assert codes_and_layers(run("check", "--baseline", "base.json", "--format", "json")) == []
    sarif = json.loads(run("check", "--baseline", "base.json", "--format", "sarif").out)
    assert sarif["runs"][0]["results"] == []


def test_only_new_findings_fail(proj):
    run("check", "--write-baseline", "base.json")
    # A deeper model: body.6 is a new tail layer; the old findings stay accepted.
    (proj / "pyproject.toml").write_text(CONFIG + "args = { depth = 7 }\n")
    result = run("check", "--baseline", "base.json", "--format", "json")
    assert result.code == 1
    assert codes_and_layers(result) == [("RFA101", "body.6"), ("RFA105", "body.6")]
    # Only the new non-error finding: passes at fail-on error, fails at fail-on info.
    base = json.loads((proj / "base.json").read_text())
    base["findings"].append({"layer": "body.6", "model": "models.py:Deep",
                             "resolution": [8, 8], "rule": "RFA101"})
    (proj / "base.json").write_text(json.dumps(base))
    assert run("check", "--baseline", "base.json").code == 0
    assert run("check", "--baseline", "base.json", "--fail-on", "info").code == 1


def test_fingerprints_survive_unrelated_edits(proj):
    run("check", "--write-baseline", "base.json")
    models = proj / "models.py"
    models.write_text('"""Docs moved every line down."""\n\n# a comment\n'
                      + models.read_text().replace("boom", "kaboom"))
    assert run("check", "--baseline", "base.json").code == 0
    # The same model checked at another resolution is a different finding.
    assert run("check", "--baseline", "base.json", "--res", "7").code == 1


def test_model_target_is_normalised(proj):
    run("check", "models.py:Deep", "--write-baseline", "base.json")
    assert run("check", "./models.py:Deep", "--baseline", "base.json").code == 0


def test_duplicate_findings_need_duplicate_entries(proj):
    result, = check_models(load_settings(), cost=False)
    finding = Finding("RFA101", Severity.ERROR, "body.4", "x")
    doubled = dataclasses.replace(result, findings=[finding, finding])
    fp = fingerprint(doubled, finding)
    assert fp == Fingerprint("RFA101", "models.py:Deep", "body.4", (8, 8))
    kept, dropped = apply_baseline([doubled], Counter({fp: 1}))
    assert (len(kept[0].findings), dropped) == (1, 1)
    kept, dropped = apply_baseline([doubled], Counter({fp: 2}))
    assert (len(kept[0].findings), dropped) == (0, 2)


@pytest.mark.parametrize("content, expected", [
    (None, "no such baseline file"),
    ("{not json", "not a readable rfalint baseline"),
    ('{"findings": []}', "not an rfalint baseline"),
    ('{"rfalint_baseline": 1, "findings": [{"rule": "RFA101"}]}', "malformed baseline entry"),
])
def test_bad_baseline_files_are_exit_2(proj, content, expected):
    if content is not None:
        (proj / "base.json").write_text(content)
    result = run("check", "--baseline", "base.json")
    assert result.code == 2 and expected in result.err
    assert result.out == ""


def test_refuses_to_overwrite_inputs(proj):
    before = (proj / "models.py").read_text()
    result = run("check", "--write-baseline", "models.py")
    assert result.code == 2 and "refusing to overwrite an input file" in result.err
    assert (proj / "models.py").read_text() == before
    assert run("check", "--write-baseline", "pyproject.toml").code == 2
    run("check", "--write-baseline", "base.json")
    result = run("check", "--write-baseline", "base.json", "--baseline", "base.json")
    assert result.code == 2 and "either --write-baseline or --baseline" in result.err


def test_load_baseline_round_trip(proj):
    run("check", "--write-baseline", "base.json")
    counts = load_baseline(proj / "base.json")
    assert sum(counts.values()) == 3
    with pytest.raises(UsageError):
        load_baseline(proj / "missing.json")
