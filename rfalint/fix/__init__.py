"""``rfalint fix``: the paper's design strategies, made executable.

The pipeline, one module per stage:

1. capture the graph and analyse it (:func:`rfalint.analyze`: border, cut, tail);
2. export it as a flat spec (:func:`rfalint.spec.from_graph`: one layer per node, same names);
3. rewrite the spec (:mod:`~rfalint.fix.strategies` on :mod:`~rfalint.fix.rewrite`);
4. build, run and re-check the result (:mod:`~rfalint.fix.verify`);
5. only then write it: YAML (:func:`rfalint.spec.dump`), Python
   (:mod:`~rfalint.fix.emit_python`), weights (:mod:`~rfalint.fix.weights`).

:func:`estimate` gives ``check`` the same candidates without writing or running anything.

Example::

    >>> import torch.nn as nn, rfalint.fix as fix
    >>> net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)],
    ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    >>> result = fix.fix(net, (3, 8, 8), "truncate")
    >>> result.before.tail_convs, result.after.tail_convs, result.after.r_max_final
    (2, 0, (9, 9))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from rfalint import spec as spec_api
from rfalint.analysis import Analysis, ObjectSize, analyze_graph
from rfalint.analysis.cost import Cost
from rfalint.capture import capture
from rfalint.errors import ModelError, RfalintError, UsageError
from rfalint.fix.emit_python import emit_python
from rfalint.fix.output import check_output, write_all
from rfalint.fix.report import estimate_lines, render_fix
from rfalint.fix.reposition import reposition
from rfalint.fix.stage_layout import rebalance
from rfalint.fix.strategies import (NotApplicable, Rewrite, remove_stem, truncate,
                                     width)
from rfalint.fix.verify import (Figures, figures, object_sizes_of, probe, reference_of,
                                verify)
from rfalint.fix.weights import Transfer, load_weights, save_weights, transfer

# Strategies that remove the unproductive tail; ``auto`` chooses among them.
TAIL_STRATEGIES: dict[str, Callable[[Analysis, dict[str, Any]], Rewrite]] = {
    "truncate": truncate,
    "remove-stem": remove_stem,
}
# Strategies that change the stage layout (docs/method.md §6).
LAYOUT_STRATEGIES = ("rebalance", "reposition")
STRATEGIES = (*TAIL_STRATEGIES, *LAYOUT_STRATEGIES, "width", "auto")
PREFERENCES = ("params", "macs", "balanced")


@dataclass
class Candidate:
    """One strategy evaluated: its figures, or why it does not apply."""

    strategy: str
    figures: Figures | None = None
    reason: str = ""
    rewrite: Rewrite | None = field(default=None, repr=False)
    model: nn.Module | None = field(default=None, repr=False)


@dataclass
class FixResult:
    strategy: str  # the strategy applied (auto: the one chosen)
    before: Figures
    rewrite: Rewrite | None  # None: nothing to fix
    after: Figures | None = None
    model: nn.Module | None = field(default=None, repr=False)  # built and verified
    candidates: list[Candidate] = field(default_factory=list)  # auto: every one evaluated
    note: str = ""  # why there is nothing to change (rewrite None)

    @property
    def spec(self) -> dict[str, Any]:
        return self.rewrite.spec


def fix(model: nn.Module, input_shape: tuple[int, ...], strategy: str, name: str = "model",
        prefer: str = "balanced", factor: float | None = None,
        object_sizes: dict[str | None, ObjectSize] | None = None, theta: float = 0.0,
        max_macs_ratio: float | None = None) -> FixResult:
    """Rewrite ``model`` with ``strategy`` and verify the result; raises RfalintError
    (UsageError: the strategy does not apply; ModelError: the result fails verification).
    With ``object_sizes`` the tail is measured against the object size (docs/method.md §5),
    and so is the re-check of the result. ``theta``: rebalance's threshold;
    ``max_macs_ratio``: reposition's cost cap (docs/method.md §6)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if prefer not in PREFERENCES:
        raise UsageError(f"--prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    if (strategy == "width") != (factor is not None):
        raise UsageError("--factor goes with --strategy width (and width needs --factor)")
    if theta and strategy not in ("rebalance", "auto"):
        raise UsageError("--theta goes with --strategy rebalance (or auto)")
    if max_macs_ratio is not None and strategy not in ("reposition", "auto"):
        raise UsageError("--max-macs-ratio goes with --strategy reposition (or auto)")
    if max_macs_ratio is not None and not max_macs_ratio > 0:
        raise UsageError(f"--max-macs-ratio must be a positive number, got {max_macs_ratio}")
    analysis = analyze_graph(capture(model, tuple(input_shape), name=name), object_sizes)
    before = figures(model, analysis)
    recheck = object_sizes_of(analysis)
    if strategy in LAYOUT_STRATEGIES:
        spec = spec_api.from_graph(analysis.graph, name)
        rewrite, note = _layout(strategy, model, analysis, spec, theta, max_macs_ratio)
        if rewrite is None:
            return FixResult(strategy, before, None, note=note)
        checked = _verify_layout(rewrite, analysis, recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    if strategy != "width" and not analysis.border.tail:
        return FixResult(strategy, before, None)
    spec = spec_api.from_graph(analysis.graph, name)
    if strategy == "width":
        rewrite = width(analysis, spec, factor)
        checked = verify(rewrite.spec, analysis.graph.input_shape, clean=False, object_sizes=recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    if strategy != "auto":
        rewrite = TAIL_STRATEGIES[strategy](analysis, spec)
        checked = verify(rewrite.spec, analysis.graph.input_shape, clean=True, object_sizes=recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    candidates = []
    for name_ in (*TAIL_STRATEGIES, *LAYOUT_STRATEGIES):
        try:
            if name_ in TAIL_STRATEGIES:
                rewrite, note = TAIL_STRATEGIES[name_](analysis, spec), ""
            else:
                rewrite, note = _layout(name_, model, analysis, spec, theta, max_macs_ratio)
            if rewrite is None:
                candidates.append(Candidate(name_, reason=note))
                continue
            checked = _verify_layout(rewrite, analysis, recheck) if name_ in LAYOUT_STRATEGIES \
                else verify(rewrite.spec, analysis.graph.input_shape, clean=True,
                            object_sizes=recheck)
        except RfalintError as exc:
            candidates.append(Candidate(name_, reason=str(exc)))
        else:
            candidates.append(Candidate(name_, checked.figures, "", rewrite, checked.model))
    # auto removes the tail: rebalance is shown for comparison, chosen only without a tail
    usable = [c for c in candidates if c.figures is not None and not c.figures.tail_convs]
    if not usable:
        raise NotApplicable("auto: no strategy removes the tail: " +
                            "; ".join(f"{c.strategy}: {c.reason or 'a tail remains'}"
                                      for c in candidates))
    best = min(usable, key=lambda c: _score(c.figures, before, prefer))
    return FixResult(best.strategy, before, best.rewrite, best.figures, best.model, candidates)


def _verify_layout(rewrite: Rewrite, analysis: Analysis, recheck):
    """Verify a layout rewrite; reposition must leave no tail and match its prediction."""
    checked = verify(rewrite.spec, analysis.graph.input_shape,
                     clean=rewrite.strategy == "reposition", object_sizes=recheck)
    found = (checked.figures.macs, checked.figures.params)
    if rewrite.expect is not None and found != rewrite.expect:
        raise ModelError(f"{rewrite.strategy}: the rewritten model has {found[0]:,} MACs and "
                         f"{found[1]:,} params, the analytic search predicted "
                         f"{rewrite.expect[0]:,} and {rewrite.expect[1]:,}")
    return checked


def _layout(strategy: str, model: nn.Module, analysis: Analysis, spec: dict[str, Any],
            theta: float, max_macs_ratio: float | None) -> tuple[Rewrite | None, str]:
    if strategy == "rebalance":
        rewrite, plan, _ = rebalance(analysis, spec, theta)
        return rewrite, (f"the organizer makes no move (units per stage "
                         f"{plan.counts_before}, theta {theta:g})")
    return reposition(model, analysis, spec, max_macs_ratio)


def _score(after: Figures, before: Figures, prefer: str) -> tuple[float, ...]:
    """Smaller is better; ties go to the other measure, then to the table's order."""
    params = after.params / max(before.params, 1)
    macs = after.macs / max(before.macs, 1)
    return {"params": (params, macs), "macs": (macs, params),
            "balanced": (params + macs, params)}[prefer]


def estimate(model: nn.Module, analysis: Analysis, cost: Cost) -> list[Candidate]:
    """Estimated figures of the tail strategies, for ``check``: nothing is written or run.

    Truncation is priced from the checked model's own cost per node (the kept nodes plus
    the new classifier); stem removal is rewritten, built on meta tensors and re-analysed
    (:func:`~rfalint.fix.verify.probe`) with the graph counter.
    """
    if not analysis.border.tail:
        return []
    out = [_estimate_truncate(analysis, cost)]
    try:
        rewrite = remove_stem(analysis, spec_api.from_graph(analysis.graph, "model"))
        out.append(Candidate("remove-stem", figures(*probe(
            rewrite.spec, analysis.graph.input_shape, object_sizes_of(analysis)))))
    except RfalintError as exc:
        out.append(Candidate("remove-stem", reason=str(exc)))
    return out


def _estimate_truncate(analysis: Analysis, cost: Cost) -> Candidate:
    graph, border = analysis.graph, analysis.border
    linears = [graph[i].module for i in sorted(border.head) if isinstance(graph[i].module, nn.Linear)]
    if not linears:
        return Candidate("truncate", reason="no linear classifier after the readout")
    kept = graph.ancestors(border.cut)
    channels, classes = graph[border.cut].out_shape[1], linears[-1].out_features
    bias = classes if linears[-1].bias is not None else 0
    params = sum(cost.params[i] for i in kept) + channels * classes + bias
    macs = sum(cost.macs[i] for i in kept) + channels * classes
    return Candidate("truncate", Figures(params, macs, 0, tuple(analysis.rfs[border.cut].r_max),
                                         graph.resolution, None, reference_of(analysis)))


def _header(result: FixResult, origin: str) -> str:
    from rfalint import __version__

    shape = "x".join(map(str, result.before.resolution))
    return (f"rfalint {__version__} fix --strategy {result.strategy} of {origin} at {shape} px: "
            + "; ".join(result.rewrite.changes))


# --emit: how a verified result is written.
EMITTERS: dict[str, Callable[[FixResult, str], str]] = {
    "yaml": lambda result, origin: spec_api.dump(result.spec, header=_header(result, origin)),
    "python": lambda result, origin: emit_python(result.spec, header=_header(result, origin)),
}

__all__ = ["LAYOUT_STRATEGIES", "EMITTERS", "check_output", "estimate_lines", "render_fix", "write_all", "Candidate", "FixResult", "Figures", "NotApplicable", "PREFERENCES", "Rewrite",
           "STRATEGIES", "Transfer", "emit_python", "estimate", "fix", "load_weights",
           "save_weights", "transfer"]
