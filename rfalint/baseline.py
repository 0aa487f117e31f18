"""Baselines: accept today's findings so that only new ones fail CI.

A fingerprint is (rule, model, layer name, resolution). It names no line numbers and no
message text, so it survives edits elsewhere in the model file and rewording of messages;
it changes when a layer is renamed, which is a new finding as far as the tail is concerned.
Fingerprints are counted (a multiset): two identical findings need two baseline entries.

File format (JSON, sorted, deterministic)::

    {"rfalint_baseline": 1,
     "findings": [{"layer": "layer4.1.conv2", "model": "nets/resnet.py",
                   "resolution": [32, 32], "rule": "RFA101"}, ...]}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from rfalint.api import CheckResult
from rfalint.errors import UsageError
from rfalint.fileio import write_atomic
from rfalint.rules import Finding

FORMAT_VERSION = 1


class Fingerprint(NamedTuple):
    rule: str
    model: str
    layer: str | None
    resolution: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"rule": self.rule, "model": self.model, "layer": self.layer,
                "resolution": list(self.resolution)}

    def sort_key(self) -> tuple:
        return (self.model, self.resolution, self.rule, self.layer or "")


def fingerprint(result: CheckResult, finding: Finding) -> Fingerprint:
    # normpath: "./nets/x.py" and "nets/x.py" are the same model.
    return Fingerprint(finding.code, posixpath.normpath(result.target), finding.layer,
                       tuple(result.analysis.graph.resolution))


def fingerprint_hash(fp: Fingerprint) -> str:
    """A stable short hash of a fingerprint (SARIF partialFingerprints)."""
    text = json.dumps(fp.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def dumps(results: list[CheckResult]) -> str:
    fps = sorted((fingerprint(r, f) for r in results for f in r.findings),
                 key=Fingerprint.sort_key)
    return json.dumps({"rfalint_baseline": FORMAT_VERSION,
                       "findings": [fp.to_dict() for fp in fps]},
                      indent=2, sort_keys=True) + "\n"


def write_baseline(path: Path, results: list[CheckResult]) -> int:
    """Write the fingerprints of every finding atomically; returns how many."""
    write_atomic(path, dumps(results))
    return sum(len(r.findings) for r in results)


def load_baseline(path: Path) -> Counter[Fingerprint]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such baseline file (create it with {{write_baseline}})",
                         options=True) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable rfalint baseline: {exc}") from exc
    if not isinstance(data, dict) or data.get("rfalint_baseline") != FORMAT_VERSION \
            or not isinstance(data.get("findings"), list):
        raise UsageError(f"{path}: not an rfalint baseline (version {FORMAT_VERSION}); "
                         "rewrite it with {write_baseline}", options=True)
    counts: Counter[Fingerprint] = Counter()
    for entry in data["findings"]:
        try:
            fp = Fingerprint(str(entry["rule"]), str(entry["model"]), entry["layer"],
                             tuple(int(s) for s in entry["resolution"]))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{path}: malformed baseline entry {entry!r}") from None
        counts[fp] += 1
    return counts


def apply_baseline(results: list[CheckResult],
                   baseline: Counter[Fingerprint]) -> tuple[list[CheckResult], int]:
    """Drop findings the baseline accepts; returns the new results and how many were dropped."""
    remaining = Counter(baseline)
    dropped = 0
    out = []
    for result in results:
        kept = []
        for finding in result.findings:
            fp = fingerprint(result, finding)
            if remaining[fp] > 0:
                remaining[fp] -= 1
                dropped += 1
            else:
                kept.append(finding)
        out.append(dataclasses.replace(result, findings=kept))
    return out, dropped
