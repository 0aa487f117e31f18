"""Output formats: SARIF (schema-valid, located), github annotations, statistics, json."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from clihelp import line_of, project, run

import rfalint
from rfalint.config import check_models, load_settings
from rfalint.report.github import to_github
from rfalint.report.locations import Locator
from rfalint.rules import RULES, Finding, Severity

# The official OASIS schema, vendored with its attribution (tests/data/README.md).
SCHEMA = Path(__file__).resolve().parent / "data" / "sarif-schema-2.1.0.json"
SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"

CONFIG = """
    [tool.rfalint]
    res = 8
    [[tool.rfalint.models]]
    target = "models.py:Deep"
    [[tool.rfalint.models]]
    target = "models.py:Residual"
    res = 4
    [[tool.rfalint.models]]
    target = "models.py:shallow"
    res = 16
"""


@pytest.fixture
def proj(tmp_path, monkeypatch):
    project(tmp_path, CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sarif_of(*args: str) -> dict:
    result = run("check", "--format", "sarif", *args)
    assert result.code in (0, 1), result.err
    return json.loads(result.out)


# ---------------------------------------------------------------------- SARIF


def test_sarif_validates_against_the_official_schema(proj):
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored schema was modified"
    schema = json.loads(raw)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    doc = sarif_of()
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    results = doc["runs"][0]["results"]
    # Every kind of result is covered: errors, warnings, notes, and one without a layer.
    assert {r["level"] for r in results} == {"error", "warning", "note"}
    assert any(r["properties"]["layer"] is None for r in results)


def test_sarif_rule_metadata(proj):
    driver = sarif_of()["runs"][0]["tool"]["driver"]
    assert driver["name"] == "rfalint" and driver["version"] == rfalint.__version__
    assert [r["id"] for r in driver["rules"]] == [rule.code for rule in RULES]
    for descriptor, rule in zip(driver["rules"], RULES):
        assert descriptor["name"] == rule.name
        assert descriptor["shortDescription"]["text"].startswith(rule.summary)
        assert descriptor["fullDescription"]["text"] == rule.explanation
        assert rule.explanation in descriptor["help"]["text"]
        if rule.remedy:
            assert rule.remedy in descriptor["help"]["text"]
    for result in sarif_of()["runs"][0]["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def _located(doc: dict) -> dict[tuple[str, str | None], dict]:
    return {(r["ruleId"], r["properties"]["layer"]): r["locations"][0]
            for r in doc["runs"][0]["results"]}


def test_sarif_locations_point_at_the_defining_line(proj):
    located = _located(sarif_of())
    models = proj / "models.py"
    # body.4 is child 4 of an nn.Sequential: torch classes are skipped up to Deep, whose
    # line assigning self.body defines the layer.
    physical = located[("RFA101", "body.4")]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "models.py", "uriBaseId": "%SRCROOT%"}
    assert physical["region"]["startLine"] == line_of(models, "self.body = nn.Sequential")
    # blocks.1.conv lives in a Block: the line of self.conv in class Block.
    physical = located[("RFA101", "blocks.1.conv")]["physicalLocation"]
    assert physical["region"]["startLine"] == line_of(models, "self.conv = nn.Conv2d")
    # A finding without a layer points at the model file.
    physical = located[("RFA203", None)]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": "models.py", "uriBaseId": "%SRCROOT%"}}
    logical = located[("RFA101", "body.4")]["logicalLocations"][0]
    assert logical["fullyQualifiedName"] == "models.py:Deep::body.4"


def test_functional_node_points_at_its_enclosing_class(proj):
    result, = check_models(load_settings().override(model="models.py:Residual", res="4"),
                           cost=False)
    located = Locator(result).locate("blocks.0.add")  # x + self.conv(x) in Block.forward
    assert located.path == proj / "models.py"
    assert located.line == line_of(proj / "models.py", "class Block(")


def test_sarif_paths_outside_the_cwd_are_absolute_file_uris(proj, monkeypatch):
    elsewhere = proj / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    located = _located(sarif_of("--config", str(proj / "pyproject.toml")))
    artifact = located[("RFA101", "body.4")]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": (proj / "models.py").as_uri()}


def test_sarif_of_a_clean_model_has_no_results(proj):
    doc = sarif_of("models.py:shallow", "--res", "4")
    assert doc["runs"][0]["results"] == []


# ---------------------------------------------------------------------- github


def test_github_annotations(proj):
    result = run("check", "--format", "github")
    assert result.code == 1
    lines = result.out.splitlines()
    pattern = re.compile(r"^::(error|warning|notice) (file=[^,]+,(line=\d+,)?)?title=RFA\d{3}::.+")
    assert lines and all(pattern.match(line) for line in lines), lines
    body = line_of(proj / "models.py", "self.body = nn.Sequential")
    assert (f"::error file=models.py,line={body},title=RFA101::models.py:Deep at 8 px, "
            "body.4: input r_min 9 > 8 px (border layer b_min)") in lines
    assert any(line.startswith("::notice file=models.py,title=RFA203::") for line in lines)
    assert any(line.startswith("::warning ") for line in lines)


def test_github_escapes_workflow_command_syntax(proj):
    result, = check_models(load_settings().override(model="models.py:Deep", res="8"),
                           cost=False)
    odd = Finding("RFA101", Severity.ERROR, "body.4", "50% done\nnext: a, b")
    text = to_github([dataclasses.replace(result, findings=[odd])])
    assert text.count("\n") == 1
    assert text.endswith("::models.py:Deep at 8 px, body.4: 50%25 done%0Anext: a, b\n")


# ---------------------------------------------------------------------- statistics, json


def test_statistics_text_and_json(proj):
    text = run("check", "--statistics")
    assert text.code == 1
    rows = [line.split() for line in text.out.splitlines()]
    data = run("check", "--statistics", "--format", "json")
    assert data.code == 1
    stats = json.loads(data.out)
    full = json.loads(run("check", "--format", "json").out)
    counts: dict[str, int] = {}
    for model in full["models"]:
        for f in model["findings"]:
            counts[f["code"]] = counts.get(f["code"], 0) + 1
    assert {s["code"]: s["count"] for s in stats} == counts
    assert [s["count"] for s in stats] == sorted(counts.values(), reverse=True)
    assert [(int(r[0]), r[1]) for r in rows] == [(s["count"], s["code"]) for s in stats]
    assert stats[0] == {"code": "RFA101", "name": "unproductive-layer", "severity": "error",
                        "count": 4}


def test_statistics_with_sarif_is_a_usage_error(proj):
    result = run("check", "--statistics", "--format", "sarif")
    assert result.code == 2 and "--statistics works with" in result.err


def test_json_config_run_wraps_models_in_config_order(proj):
    data = json.loads(run("check", "--format", "json").out)
    assert data["schema_version"] == 1
    assert [m["model"] for m in data["models"]] == ["models.py:Deep", "models.py:Residual",
                                                    "models.py:shallow"]
    single = json.loads(run("check", "models.py:Deep", "--format", "json").out)
    assert single == data["models"][0]


def test_unknown_format_is_exit_2(proj):
    result = run("check", "--format", "xml")
    assert result.code == 2 and "--format must be one of text, json, sarif, github" in result.err


# ---------------------------------------------------------------------- determinism


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_same_input_same_bytes_in_process(proj, fmt):
    first = run("check", "--format", fmt)
    second = run("check", "--format", fmt)
    assert first.code == second.code == 1
    assert first.out == second.out and first.out


SCRIPT = """
import sys
from rfalint.config import check_models, load_settings
from rfalint.report import to_json_all, to_sarif
results = check_models(load_settings())
sys.stdout.write(to_json_all(results) + to_sarif(results))
"""


def test_same_input_same_bytes_across_processes(proj):
    """Another hash seed changes set and dict-of-str iteration order; output must not."""
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=proj, text=True,
                          capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    in_process = run("check", "--format", "json").out + run("check", "--format", "sarif").out
    assert proc.stdout == in_process
