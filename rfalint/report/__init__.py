"""Stage 5 of the pipeline: render check results (text, json, sarif, github, statistics).

The renderers are imported on first use (:mod:`rfalint.lazy`): JSON output never needs rich.
"""

from rfalint.lazy import exports

_RENDERERS = {"to_github": "rfalint.report.github", "SCHEMA_VERSION": "rfalint.report.json_report",
              "to_dict": "rfalint.report.json_report", "to_json": "rfalint.report.json_report",
              "to_json_all": "rfalint.report.json_report", "to_sarif": "rfalint.report.sarif",
              "statistics_json": "rfalint.report.statistics",
              "statistics_text": "rfalint.report.statistics",
              "render_text": "rfalint.report.text"}
__all__ = sorted(_RENDERERS)
__getattr__, __dir__ = exports(__name__, _RENDERERS)
