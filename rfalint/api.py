"""The library API behind the CLI: load -> capture -> analyse -> rules.

Example::

    >>> import torch.nn as nn, rfalint
    >>> net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)])
    >>> result = rfalint.check(net, (3, 8, 8))
    >>> result.analysis.graph[result.analysis.border.b_min.node].name
    '4'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

import torch.nn as nn

from rfalint.analysis import Analysis, ObjectSize, analyze_graph, parse_object_sizes
from rfalint.analysis.cost import Cost, measure
from rfalint.analysis.memory import Memory, activation_memory, model_dtype
from rfalint.capture import capture
from rfalint.analysis.plan import Candidate, estimate
from rfalint.errors import UsageError
from rfalint.ops import Registry
from rfalint.rules import Finding, Severity, run_rules

# "incomplete": fail on errors and on any analysis that could not be completed (RFA201)
FAIL_LEVELS = ("error", "warning", "info", "incomplete", "never")


@dataclass
class CheckResult:
    """One model checked at one resolution."""

    target: str
    analysis: Analysis
    findings: list[Finding]
    source: Path | None = None
    # The checked module itself: reports map layer names back to source lines with it.
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    cost: Cost | None = None  # params and MACs per node; None when check ran with cost=False
    # Estimated fixes (rfalint.analysis.plan.estimate): empty without a tail, None
    # without the cost model.
    candidates: list[Candidate] | None = None
    # Activation bytes per node and the live peak at batch 1; None with cost=False.
    memory: Memory | None = None

    def failed(self, fail_on: str = "error") -> bool:
        if fail_on == "never":
            return False
        if fail_on == "incomplete":
            if not self.analysis.complete:
                return True
            fail_on = "error"
        threshold = Severity(fail_on).rank
        return any(f.severity.rank >= threshold for f in self.findings)


ObjectSizes = Union[str, Mapping[Optional[str], ObjectSize], None]


def object_sizes(value: ObjectSizes) -> dict[str | None, ObjectSize] | None:
    """``--object-size`` text (``"32"``, ``"p3=8:64,p4=32:128"``) or its parsed form."""
    if value is None or value == "":
        return None
    return parse_object_sizes(value) if isinstance(value, str) else dict(value)


def analyze(model: nn.Module, input_shape: tuple[int, ...], name: str = "model",
            object_size: ObjectSizes = None, include_gates: bool = False,
            registry: Registry | None = None) -> Analysis:
    """Capture ``model`` at ``input_shape`` = (C, *spatial) and compute RFs and borders,
    against ``object_size`` instead of the image when given (docs/method.md §5).
    ``include_gates`` counts full-size attention gates as feature paths (§3).
    ``registry`` says which ops and leaf modules rfalint knows (:mod:`rfalint.ops`;
    default: the process-wide one, which :func:`rfalint.register_module` extends)."""
    graph = capture(model, tuple(input_shape), name=name, registry=registry)
    return analyze_graph(graph, object_sizes(object_size), include_gates=include_gates)


def rf_region(analysis: Analysis, node: str | int,
              unit: int | tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """The input box that output unit ``unit`` of ``node`` reads, over all its paths.

    ``node`` is a node name (as in the reports) or id; ``unit`` an index per spatial axis
    (an int means the same on every axis; negative counts from the end). Returns per axis
    ``(first, last)`` input pixel, inclusive and before clipping to the image (negative or
    past the end where the field reaches into padding), or ``None`` when rfalint cannot
    tell where the node's units look (an op it does not understand upstream). For a
    single-phase node this is ``[u*S - P, u*S - P + r_max - 1]`` (docs/method.md §4).

    >>> import torch.nn as nn, rfalint
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    >>> rfalint.rf_region(rfalint.analyze(net, (3, 16, 16)), "1", (0, 3))
    ((-3, 3), (3, 9))
    """
    graph = analysis.graph
    try:
        target = graph[node] if isinstance(node, int) else graph.by_name(node)
    except (KeyError, IndexError):
        raise UsageError(f"no node {node!r} in {graph.model_name}") from None
    rf = analysis.rfs[target.id]
    if rf is None:
        raise UsageError(f"node {target.name!r} has no spatial axes")
    size = target.spatial_out
    units = (unit,) * len(size) if isinstance(unit, int) else tuple(unit)
    if len(units) != len(size) or not all(-n <= u < n for u, n in zip(units, size)):
        raise UsageError(f"unit {unit!r} is outside {target.name!r}'s map of "
                         f"{'x'.join(map(str, size))} units")
    return rf.region_of(tuple(u % n for u, n in zip(units, size)))


def check(model: nn.Module, input_shape: tuple[int, ...], name: str = "model",
          select: Iterable[str] = ("RFA",), ignore: Iterable[str] = (),
          per_layer_ignores: Mapping[str, Iterable[str]] | None = None,
          source: Path | None = None, cost: bool = True, counter: str = "auto",
          object_size: ObjectSizes = None, include_gates: bool = False,
          registry: Registry | None = None) -> CheckResult:
    """Analyse ``model``, run the rules on it and, unless ``cost=False``, count its
    parameters and MACs per layer with ``counter`` (see :mod:`rfalint.analysis.cost`) and
    its activation memory (:mod:`rfalint.analysis.memory`)."""
    analysis = analyze(model, input_shape, name=name, object_size=object_size,
                       include_gates=include_gates, registry=registry)
    findings = run_rules(analysis, select, ignore, per_layer_ignores)
    counted = measure(model, analysis.graph, counter) if cost else None
    candidates = estimate(analysis, counted) if cost else None
    memory = activation_memory(analysis.graph, model_dtype(model)) if cost else None
    return CheckResult(name, analysis, findings, source, model, counted, candidates, memory)
