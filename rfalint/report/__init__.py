"""Stage 5 of the pipeline: render check results (text, json, sarif, github, statistics)."""

from rfalint.report.github import to_github
from rfalint.report.json_report import SCHEMA_VERSION, to_dict, to_json, to_json_all
from rfalint.report.sarif import to_sarif
from rfalint.report.statistics import statistics_json, statistics_text
from rfalint.report.text import render_text

__all__ = ["SCHEMA_VERSION", "render_text", "statistics_json", "statistics_text", "to_dict",
           "to_github", "to_json", "to_json_all", "to_sarif"]
