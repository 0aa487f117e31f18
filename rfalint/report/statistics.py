"""``--statistics``: how often each rule fired over all models checked (as ruff prints it)."""

from __future__ import annotations

import json
from collections import Counter

from rfalint.api import CheckResult
from rfalint.rules import get_rule


def statistics(results: list[CheckResult]) -> list[dict]:
    """Rows of code, name, severity and count; most frequent first, then by code."""
    counts = Counter(f.code for r in results for f in r.findings)
    rows = []
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        rule = get_rule(code)
        rows.append({"code": code, "name": rule.name, "severity": rule.severity.value,
                     "count": count})
    return rows


def statistics_text(results: list[CheckResult]) -> str:
    rows = statistics(results)
    if not rows:
        return "No findings.\n"
    width = max(len(str(row["count"])) for row in rows)
    return "".join(f"{row['count']:>{width}}  {row['code']}  {'[' + row['severity'] + ']':<9}  "
                   f"{row['name']}\n" for row in rows)


def statistics_json(results: list[CheckResult]) -> str:
    return json.dumps(statistics(results), indent=2) + "\n"
