"""Build a rewritten spec, run it, re-check it and put numbers on it.

:func:`probe` is the cheap form (``meta`` tensors: no memory, no compute) that strategies
use between steps and ``check`` uses for its estimates; :func:`verify` is what ``fix``
requires before it writes anything: real weights, a real forward at the target
resolution, and a re-check. Both price models with rfalint's graph counter, which agrees
with fvcore node by node and needs no traced forward (see :mod:`rfalint.analysis.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rfalint import spec as spec_api
from rfalint.analysis import Analysis, ObjectSize, analyze_graph
from rfalint.analysis.cost import GRAPH, measure
from rfalint.analysis.memory import activation_memory, model_dtype
from rfalint.analysis.stages import NoStages, dif_sum, find_stages
from rfalint.capture import capture
from rfalint.errors import ModelError
from rfalint.graph import Kind
from rfalint.spec import SpecError


@dataclass(frozen=True)
class Figures:
    """What the before/after tables show for one model at one resolution."""

    params: int
    macs: int  # 1 fused multiply-add = 1 MAC; FLOPs = 2 x MACs
    tail_convs: int  # conv layers in the unproductive tail
    r_max_final: tuple[int, ...]  # RF entering the readout, per axis
    resolution: tuple[int, ...]
    # Peak live activation bytes at batch 1 (docs/method.md §5); None where only estimated.
    activation_peak: int | None = None
    reference: tuple[int, ...] | None = None  # the object size, when not the image
    dif_sum: float | None = None  # sum of the units' IF gains; None without stages


def figures(model: nn.Module, analysis: Analysis) -> Figures:
    cost = measure(model, analysis.graph, counter=GRAPH)
    graph = analysis.graph
    tail = sum(1 for i in analysis.border.tail if graph[i].kind is Kind.CONV)
    peak = activation_memory(graph, model_dtype(model)).peak
    try:
        gains = dif_sum(find_stages(analysis))
    except NoStages:
        gains = None
    return Figures(cost.params_total, cost.macs_total, tail, tuple(analysis.rf_final.r_max),
                   graph.resolution, peak, reference_of(analysis), gains)


def reference_of(analysis: Analysis) -> tuple[int, ...] | None:
    return analysis.reference if analysis.object_size is not None else None


def object_sizes_of(analysis: Analysis) -> dict[str | None, ObjectSize] | None:
    """The rewritten model is re-checked against the original's primary object size."""
    return None if analysis.object_size is None else {None: analysis.object_size}


def probe(spec: dict[str, Any], input_shape: tuple[int, ...],
          object_sizes: dict[str | None, ObjectSize] | None = None
          ) -> tuple[nn.Module, Analysis]:
    """Build ``spec`` on the meta device and analyse it; a spec that does not build is a
    :class:`ModelError` (a rewrite that broke shapes)."""
    try:
        model = spec_api.build_meta(spec)
        analysis = analyze_graph(capture(model, tuple(input_shape), name=spec.get("name", "model")),
                                 object_sizes)
    except SpecError as exc:
        raise ModelError(f"the rewritten model does not build: {exc}") from None
    return model, analysis


@dataclass
class Verified:
    model: nn.Module  # real, freshly initialised weights
    analysis: Analysis
    figures: Figures


def verify(spec: dict[str, Any], input_shape: tuple[int, ...], clean: bool,
           object_sizes: dict[str | None, ObjectSize] | None = None) -> Verified:
    """Build ``spec``, run it on a zero input of ``input_shape`` and re-check it; with
    ``clean``, an unproductive layer left is a failure. Every failure is a ModelError."""
    try:
        model = spec_api.build(spec)
    except SpecError as exc:
        raise ModelError(f"the rewritten model does not build: {exc}") from None
    model.eval()
    with torch.no_grad():
        try:
            model(torch.zeros((1, *input_shape)))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"the rewritten model does not run at {input_shape}: {first}") from None
    analysis = analyze_graph(capture(model, tuple(input_shape), name=spec.get("name", "model")),
                             object_sizes)
    result = figures(model, analysis)
    if clean and result.tail_convs:
        raise ModelError(f"the rewritten model still has {result.tail_convs} unproductive conv "
                         f"layers at {'x'.join(map(str, result.resolution))} px")
    return Verified(model, analysis, result)
