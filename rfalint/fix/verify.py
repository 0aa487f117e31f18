"""Build a rewritten spec, run it, re-check it and put numbers on it.

:func:`verify` is what ``fix`` requires before it writes anything: real weights, a real
forward at the target resolution, and a re-check. Models are priced with rfalint's graph
counter, which agrees with fvcore node by node and needs no traced forward (see
:mod:`rfalint.analysis.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from rfalint import spec as spec_api
from rfalint.analysis import Analysis, ObjectSize, analyze_graph
from rfalint.analysis.cost import GRAPH, measure
from rfalint.analysis.memory import activation_memory, model_dtype
from rfalint.analysis.plan import Figures, reference_of, tail_convs
from rfalint.analysis.stages import NoStages, dif_sum, find_stages
from rfalint.capture import capture
from rfalint.errors import ModelError, first_line
from rfalint.spec import Document, SpecError


def figures(model: nn.Module, analysis: Analysis) -> Figures:
    cost = measure(model, analysis.graph, counter=GRAPH)
    peak = activation_memory(analysis.graph, model_dtype(model)).peak
    try:
        gains = dif_sum(find_stages(analysis))
    except NoStages:
        gains = None
    return Figures(cost.params_total, cost.macs_total, tail_convs(analysis),
                   tuple(analysis.rf_final.r_max), analysis.graph.resolution, peak,
                   reference_of(analysis), gains)


@dataclass
class Verified:
    model: nn.Module  # real, freshly initialised weights
    analysis: Analysis
    figures: Figures


def verify(doc: Document, input_shape: tuple[int, ...], clean: bool,
           object_sizes: dict[str | None, ObjectSize] | None = None) -> Verified:
    """Build ``doc``, run it on a zero input of ``input_shape`` and re-check it (against
    ``object_sizes`` when given); with ``clean``, an unproductive layer left is a failure.
    Every failure is a ModelError."""
    try:
        model = spec_api.build(doc)
    except SpecError as exc:
        raise ModelError(f"the rewritten model does not build: {exc}") from None
    model.eval()
    with torch.no_grad():
        try:
            model(torch.zeros((1, *input_shape)))
        except Exception as exc:
            raise ModelError(f"the rewritten model does not run at {input_shape}: "
                             f"{first_line(exc) or type(exc).__name__}") from None
    analysis = analyze_graph(capture(model, tuple(input_shape), name=doc.name), object_sizes)
    result = figures(model, analysis)
    if clean and result.tail_convs:
        raise ModelError(f"the rewritten model still has {result.tail_convs} unproductive conv "
                         f"layers at {'x'.join(map(str, result.resolution))} px")
    return Verified(model, analysis, result)
