"""Saturation from data (docs/method.md §7): stream layer outputs, measure how much of
each layer's feature space the data uses, find the saturation tail and advise on the width.

Pipeline: ``data`` (sources) -> ``stats`` (streaming covariance, eigenvalues) ->
``advice`` (tail, width) -> ``report``; ``run`` wires them to a model and its graph, and
``monitor`` to a training loop (``lightning`` holds an optional Lightning callback).
"""

from rfalint.saturation.advice import fix_command
from rfalint.saturation.data import LoaderSource, Source, as_source, open_source
from rfalint.saturation.monitor import Monitor, MonitorReport
from rfalint.saturation.report import render_text, to_dict, to_json
from rfalint.saturation.run import SaturationResult, load_weights, run_saturation

__all__ = ["LoaderSource", "Monitor", "MonitorReport", "SaturationResult", "Source", "as_source",
           "fix_command", "load_weights", "open_source", "render_text", "run_saturation",
           "to_dict", "to_json"]
