"""Every rule's VALID examples produce none of its findings; INVALID ones at least one."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelp import run

import rfalint
from rfalint.rules import RULES, get_rule, run_rules

CASES = [(rule, example, kind) for rule in RULES
         for kind, examples in (("valid", rule.valid), ("invalid", rule.invalid))
         for example in examples]


def test_every_rule_has_examples_and_docs():
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes))
    for rule in RULES:
        assert rule.valid and rule.invalid, rule.code
        assert rule.summary and rule.explanation, rule.code


@pytest.mark.parametrize("rule, example, kind", CASES,
                         ids=[f"{r.code}-{k}-{i}" for i, (r, _, k) in enumerate(CASES)])
def test_rule_examples(rule, example, kind):
    found = rule.findings_of(example.build(), example.input_shape)
    if kind == "valid":
        assert found == []
    else:
        assert found and all(f.code == rule.code for f in found)


def test_select_ignore_prefixes_and_per_layer_ignores():
    rule = get_rule("RFA101")
    analysis = rfalint.analyze(rule.invalid[0].build(), rule.invalid[0].input_shape)
    everything = {f.code for f in run_rules(analysis)}
    assert {"RFA101", "RFA105"} <= everything
    assert {f.code for f in run_rules(analysis, select=["RFA10"], ignore=["RFA105"])} == \
        everything & {"RFA101", "RFA102", "RFA103", "RFA104"}
    layers = {f.layer for f in run_rules(analysis, select=["RFA101"])}
    kept = {f.layer for f in run_rules(analysis, select=["RFA101"],
                                       per_layer_ignores={"1?": ["RFA1"]})}
    assert kept == {name for name in layers if not (len(name) == 2 and name.startswith("1"))}


def test_unknown_rule_code():
    with pytest.raises(rfalint.errors.UsageError, match="unknown rule"):
        get_rule("RFA999")


def test_readme_rule_table_is_the_rule_classes():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| RFA")]
    assert rows == [f"| {r.code} | {r.severity.value} | {r.summary} |" for r in RULES]


def test_critical_layers_are_information():
    assert get_rule("RFA102").severity.value == "info"


def test_rule_command_prints_the_examples():
    result = run("rule", "RFA102")
    assert result.code == 0
    assert "VALID example" in result.out and "INVALID example" in result.out
    assert "-> RFA102 blocks.1.2: input r_max 9 > 8 px" in result.out
