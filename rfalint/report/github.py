"""GitHub Actions workflow commands: one annotation per finding on the pull request.

``::error file=nets/resnet.py,line=30,title=RFA101::message`` (see GitHub's "workflow
commands" docs); info findings become ``::notice``. Annotations sit on the user-code line
that defines the layer (:mod:`rfalint.report.locations`).
"""

from __future__ import annotations

from rfalint.api import CheckResult
from rfalint.report.locations import Locator, display_path
from rfalint.graph import fmt_axes

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(results: list[CheckResult]) -> str:
    lines = []
    for result in results:
        locator = Locator(result)
        where = f"{result.target} at {fmt_axes(result.analysis.graph.resolution)} px"
        for finding in result.findings:
            props = []
            found = locator.locate(finding.layer)
            if found is not None:
                props.append(f"file={_escape_property(display_path(found.path))}")
                if found.line is not None:
                    props.append(f"line={found.line}")
            props.append(f"title={_escape_property(finding.code)}")
            layer = f", {finding.layer}" if finding.layer else ""
            message = f"{where}{layer}: {finding.message}"
            lines.append(f"::{COMMANDS[finding.severity.value]} {','.join(props)}::"
                         f"{_escape_data(message)}")
    return "".join(line + "\n" for line in lines)
