"""Stage 5 of the pipeline: render check results (text, json)."""

from rfalint.report.json_report import SCHEMA_VERSION, to_dict, to_json
from rfalint.report.text import render_text

__all__ = ["SCHEMA_VERSION", "render_text", "to_dict", "to_json"]
