"""Stage 4 of the pipeline: turn an analysis into findings, filtered by select/ignore."""

from __future__ import annotations

import fnmatch
from typing import Iterable, Mapping

from rfalint.analysis import Analysis
from rfalint.errors import UsageError
from rfalint.rules.base import Example, Finding, Rule, Severity
from rfalint.rules.catalog import RULES


def get_rule(code: str) -> Rule:
    for rule in RULES:
        if rule.code == code.upper() or rule.name == code.lower():
            return rule
    known = ", ".join(r.code for r in RULES)
    raise UsageError(f"unknown rule {code!r} (known: {known})")


def _matches(code: str, prefixes: Iterable[str]) -> bool:
    return any(code.startswith(p.upper()) for p in prefixes)


def run_rules(analysis: Analysis, select: Iterable[str] = ("RFA",), ignore: Iterable[str] = (),
              per_layer_ignores: Mapping[str, Iterable[str]] | None = None) -> list[Finding]:
    """All findings of the selected rules, ruff-style prefix selection, sorted."""
    select, ignore = list(select), list(ignore)
    findings: list[Finding] = []
    for rule in RULES:
        if not _matches(rule.code, select) or _matches(rule.code, ignore):
            continue
        for finding in rule.check(analysis):
            if finding.layer and per_layer_ignores and any(
                    fnmatch.fnmatchcase(finding.layer, pattern) and _matches(finding.code, codes)
                    for pattern, codes in per_layer_ignores.items()):
                continue
            findings.append(finding)
    order = {node.name: node.id for node in analysis.graph}
    return sorted(findings, key=lambda f: (-f.severity.rank, f.code, order.get(f.layer, -1),
                                           f.message))


__all__ = ["Example", "Finding", "RULES", "Rule", "Severity", "get_rule", "run_rules"]
