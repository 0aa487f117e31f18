"""SARIF 2.1.0 for code-scanning tools (GitHub code scanning, IDE SARIF viewers).

One run holds the results of every model checked. Each result points at the user-code
line that defines the offending layer (see :mod:`rfalint.report.locations`) and carries
the model, layer and resolution as a logical location and properties, plus the baseline
fingerprint so code scanning tracks a finding across commits. Output is deterministic:
no timestamps, rules in catalogue order, results in model then finding order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import rfalint
from rfalint.api import CheckResult
from rfalint.baseline import fingerprint, fingerprint_hash
from rfalint.report.locations import Locator, relative_uri
from rfalint.graph import fmt_axes
from rfalint.rules import RULES, Finding, Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
SRCROOT = "%SRCROOT%"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    help_text = rule.explanation + (f"\n\nRemedy: {rule.remedy}." if rule.remedy else "")
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary + "."},
        "fullDescription": {"text": rule.explanation},
        "help": {"text": help_text},
        "defaultConfiguration": {"level": LEVELS[rule.severity.value]},
    }


def _result(result: CheckResult, finding: Finding, locator: Locator,
            rule_index: dict[str, int]) -> dict[str, Any]:
    resolution = result.analysis.graph.resolution
    where = f"{result.target} at {fmt_axes(resolution)} px"
    layer = f", {finding.layer}" if finding.layer else ""
    text = f"{where}{layer}: {finding.message}"
    if finding.remedy:
        text += f". Remedy: {finding.remedy}"
    entry: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": LEVELS[finding.severity.value],
        "message": {"text": text},
    }
    location: dict[str, Any] = {}
    found = locator.locate(finding.layer)
    if found is not None:
        uri, relative = relative_uri(found.path)
        artifact: dict[str, Any] = {"uri": uri}
        if relative:
            artifact["uriBaseId"] = SRCROOT
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if found.line is not None:
            physical["region"] = {"startLine": found.line}
        location["physicalLocation"] = physical
    name = finding.layer or result.target
    location["logicalLocations"] = [{"name": name,
                                     "fullyQualifiedName": f"{result.target}::{name}"}]
    entry["locations"] = [location]
    entry["partialFingerprints"] = {"rfalint/v1": fingerprint_hash(fingerprint(result, finding))}
    entry["properties"] = {"model": result.target, "layer": finding.layer,
                           "resolution": list(resolution)}
    return entry


def to_sarif_dict(results: list[CheckResult]) -> dict[str, Any]:
    rule_index = {rule.code: i for i, rule in enumerate(RULES)}
    sarif_results = []
    for result in results:
        locator = Locator(result)
        sarif_results += [_result(result, f, locator, rule_index) for f in result.findings]
    root = Path.cwd().resolve().as_uri().rstrip("/") + "/"
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "rfalint",
                "version": rfalint.__version__,
                "semanticVersion": rfalint.__version__,
                "rules": [_rule_descriptor(rule) for rule in RULES],
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": root}},
            "invocations": [{"executionSuccessful": True}],
            "columnKind": "unicodeCodePoints",
            "results": sarif_results,
        }],
    }


def to_sarif(results: list[CheckResult]) -> str:
    return json.dumps(to_sarif_dict(results), indent=2) + "\n"
