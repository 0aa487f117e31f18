"""``rfalint fix``: the paper's design strategies, made executable.

The pipeline, one module per stage:

1. capture the graph and analyse it (:func:`rfalint.analyze`: border, cut, tail);
2. export it as a flat spec (:func:`rfalint.spec.from_graph`: one layer per node, same names);
3. rewrite the spec (:mod:`~rfalint.fix.strategies` on :mod:`~rfalint.fix.rewrite`);
4. build, run and re-check the result (:mod:`~rfalint.fix.verify`);
5. only then write it: YAML (:func:`rfalint.spec.dump`), Python
   (:mod:`~rfalint.fix.emit_python`), weights (:mod:`~rfalint.fix.weights`).

:func:`rfalint.analysis.plan.estimate` gives ``check`` the same strategies' figures
without building or running anything; the strategies apply the same plans.

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
from pathlib import Path
from typing import Callable

import torch.nn as nn

from rfalint import spec as spec_api
from rfalint.analysis import Analysis, ObjectSize, analyze_graph
from rfalint.analysis.plan import (Candidate, Figures, NotApplicable, estimate,
                                   object_sizes_of)
from rfalint.capture import capture
from rfalint.errors import ModelError, RfalintError, UsageError
from rfalint.fix.emit_python import emit_python
from rfalint.fix.output import Outputs, write_all
from rfalint.fix.report import render_fix
from rfalint.fix.reposition import reposition
from rfalint.fix.stage_layout import rebalance
from rfalint.fix.strategies import Rewrite, remove_stem, truncate, width
from rfalint.fix.verify import Verified, figures, verify
from rfalint.fix.weights import MovedWeights, save_weights, transfer
from rfalint.spec import Document
from rfalint.weights import read_state_dict

# Strategies that remove the unproductive tail; ``auto`` chooses among them.
TAIL_STRATEGIES: dict[str, Callable[[Analysis, Document], Rewrite]] = {
    "truncate": truncate,
    "remove-stem": remove_stem,
}
# Strategies that change the stage layout (docs/method.md §6).
LAYOUT_STRATEGIES = ("rebalance", "reposition")
STRATEGIES = (*TAIL_STRATEGIES, *LAYOUT_STRATEGIES, "width", "auto")
PREFERENCES = ("params", "macs", "balanced")


@dataclass
class Evaluated(Candidate):
    """A strategy that ``auto`` applied and verified (or why it does not apply)."""

    rewrite: Rewrite | None = field(default=None, repr=False)
    model: nn.Module | None = field(default=None, repr=False)


@dataclass
class FixResult:
    strategy: str  # the strategy applied (auto: the one chosen)
    before: Figures
    rewrite: Rewrite | None  # None: nothing to fix
    after: Figures | None = None
    model: nn.Module | None = field(default=None, repr=False)  # built and verified
    candidates: list[Evaluated] = field(default_factory=list)  # auto: every one evaluated
    moved: MovedWeights | None = None  # the original weights carried over (``weights=``)
    written: list[Path] = field(default_factory=list)  # files written, in order
    note: str = ""  # why there is nothing to change (rewrite None)

    @property
    def spec(self) -> dict:
        return self.rewrite.spec

    def text(self, emit: str = "yaml", origin: str = "") -> str:
        """The rewritten model as a file: a YAML spec or Python source (``EMITTERS``)."""
        return EMITTERS[emit](self, origin)


def fix(model: nn.Module, input_shape: tuple[int, ...], strategy: str, name: str = "model",
        prefer: str = "balanced", factor: float | None = None,
        object_sizes: dict[str | None, ObjectSize] | None = None,
        weights: str | Path | None = None, outputs: Outputs = Outputs(), theta: float = 0.0,
        max_macs_ratio: float | None = None) -> FixResult:
    """Rewrite ``model`` with ``strategy``, verify the result and write ``outputs``.

    ``weights``: a state dict file of ``model`` (read with ``weights_only=True``, checked to
    fit exactly); every surviving tensor is copied into the new model (``result.moved``)
    and ``outputs.save_weights`` receives them. Output paths are checked before any work
    and written only after verification. Raises RfalintError (UsageError: a bad option or
    a strategy that does not apply; ModelError: the result fails verification). With
    ``object_sizes`` the tail is measured against the object size (docs/method.md §5), and
    so is the re-check of the result. ``theta``: rebalance's dIF threshold;
    ``max_macs_ratio``: reposition's cost cap, a multiple of the model's MACs
    (docs/method.md §6).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"{{strategy}} must be one of {', '.join(STRATEGIES)}, got "
                         f"{strategy!r}", options=True)
    if prefer not in PREFERENCES:
        raise UsageError(f"{{prefer}} must be one of {', '.join(PREFERENCES)}, got {prefer!r}",
                         options=True)
    if (strategy == "width") != (factor is not None):
        raise UsageError("{factor} goes with {strategy} width (and width needs {factor})",
                         options=True)
    if theta and strategy not in ("rebalance", "auto"):
        raise UsageError("{theta} goes with {strategy} rebalance (or auto)", options=True)
    if max_macs_ratio is not None and strategy not in ("reposition", "auto"):
        raise UsageError("{max_macs_ratio} goes with {strategy} reposition (or auto)",
                         options=True)
    if max_macs_ratio is not None and not max_macs_ratio > 0:
        raise UsageError(f"{{max_macs_ratio}} must be a positive number, got {max_macs_ratio}",
                         options=True)
    if outputs.emit not in EMITTERS:
        raise UsageError(f"{{emit}} must be one of {', '.join(EMITTERS)}, got "
                         f"{outputs.emit!r}", options=True)
    weights = None if weights is None else Path(weights)
    outputs.check(weights)
    state = read_state_dict(weights, model) if weights is not None else None
    result = _rewrite(model, input_shape, strategy, name, prefer, factor, object_sizes, theta,
                      max_macs_ratio)
    if result.rewrite is None:
        return result
    files = []
    if outputs.output is not None:
        files.append((outputs.output, result.text(outputs.emit, outputs.origin)))
    if state is not None:
        result.moved = transfer(state, result.model, result.rewrite.fresh)
        files.append((outputs.save_weights, save_weights(result.moved)))
    write_all(files)
    result.written = [path for path, _ in files]
    return result


def _rewrite(model: nn.Module, input_shape: tuple[int, ...], strategy: str, name: str,
             prefer: str, factor: float | None,
             object_sizes: dict[str | None, ObjectSize] | None, theta: float,
             max_macs_ratio: float | None) -> FixResult:
    analysis = analyze_graph(capture(model, tuple(input_shape), name=name), object_sizes)
    before = figures(model, analysis)
    recheck = object_sizes_of(analysis)
    if strategy in LAYOUT_STRATEGIES:
        doc = spec_api.parse(spec_api.from_graph(analysis.graph, name))
        rewrite, note = _layout(strategy, model, analysis, doc, theta, max_macs_ratio)
        if rewrite is None:
            return FixResult(strategy, before, None, note=note)
        checked = _verify_layout(rewrite, analysis, recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    if strategy != "width" and not analysis.border.tail:
        return FixResult(strategy, before, None)
    doc = spec_api.parse(spec_api.from_graph(analysis.graph, name))
    if strategy == "width":
        rewrite = width(analysis, doc, factor)
        checked = verify(rewrite.document, analysis.graph.input_shape, clean=False,
                         object_sizes=recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    if strategy != "auto":
        rewrite = TAIL_STRATEGIES[strategy](analysis, doc)
        checked = verify(rewrite.document, analysis.graph.input_shape, clean=True,
                         object_sizes=recheck)
        return FixResult(strategy, before, rewrite, checked.figures, checked.model)
    candidates = []
    for name_ in (*TAIL_STRATEGIES, *LAYOUT_STRATEGIES):
        try:
            if name_ in TAIL_STRATEGIES:
                rewrite = TAIL_STRATEGIES[name_](analysis, doc)
                checked = verify(rewrite.document, analysis.graph.input_shape, clean=True,
                                 object_sizes=recheck)
            else:
                rewrite, note = _layout(name_, model, analysis, doc, theta, max_macs_ratio)
                if rewrite is None:
                    candidates.append(Evaluated(name_, reason=note))
                    continue
                checked = _verify_layout(rewrite, analysis, recheck)
        except RfalintError as exc:
            candidates.append(Evaluated(name_, reason=str(exc)))
        else:
            candidates.append(Evaluated(name_, checked.figures, "", rewrite, checked.model))
    # auto removes the tail: rebalance is shown for comparison, chosen only without a tail
    usable = [c for c in candidates if c.figures is not None and not c.figures.tail_convs]
    if not usable:
        raise NotApplicable("auto: no strategy removes the tail: " +
                            "; ".join(f"{c.strategy}: {c.reason or 'a tail remains'}"
                                      for c in candidates))
    best = min(usable, key=lambda c: _score(c.figures, before, prefer))
    return FixResult(best.strategy, before, best.rewrite, best.figures, best.model, candidates)


def _verify_layout(rewrite: Rewrite, analysis: Analysis,
                   recheck: dict[str | None, ObjectSize] | None) -> Verified:
    """Verify a layout rewrite; reposition must leave no tail and match its prediction."""
    checked = verify(rewrite.document, analysis.graph.input_shape,
                     clean=rewrite.strategy == "reposition", object_sizes=recheck)
    found = (checked.figures.macs, checked.figures.params)
    if rewrite.expect is not None and found != rewrite.expect:
        raise ModelError(f"{rewrite.strategy}: the rewritten model has {found[0]:,} MACs and "
                         f"{found[1]:,} params, the analytic search predicted "
                         f"{rewrite.expect[0]:,} and {rewrite.expect[1]:,}")
    return checked


def _layout(strategy: str, model: nn.Module, analysis: Analysis, doc: Document,
            theta: float, max_macs_ratio: float | None) -> tuple[Rewrite | None, str]:
    """A layout strategy's rewrite, or None and why it makes no change."""
    if strategy == "rebalance":
        rewrite, plan, _ = rebalance(analysis, doc, theta)
        return rewrite, (f"the organizer makes no move (units per stage "
                         f"{plan.counts_before}, theta {theta:g})")
    return reposition(model, analysis, doc, max_macs_ratio)


def _score(after: Figures, before: Figures, prefer: str) -> tuple[float, ...]:
    """Smaller is better; ties go to the other measure, then to the table's order."""
    params = after.params / max(before.params, 1)
    macs = after.macs / max(before.macs, 1)
    return {"params": (params, macs), "macs": (macs, params),
            "balanced": (params + macs, params)}[prefer]


def _header(result: FixResult, origin: str) -> str:
    from rfalint import __version__

    shape = "x".join(map(str, result.before.resolution))
    return (f"rfalint {__version__} fix --strategy {result.strategy} of {origin} at {shape} px: "
            + "; ".join(result.rewrite.changes))


# --emit: how a verified result is written.
EMITTERS: dict[str, Callable[[FixResult, str], str]] = {
    "yaml": lambda result, origin: spec_api.dump(result.spec, header=_header(result, origin)),
    "python": lambda result, origin: emit_python(result.rewrite.document,
                                                 header=_header(result, origin)),
}

__all__ = ["EMITTERS", "LAYOUT_STRATEGIES", "PREFERENCES", "STRATEGIES", "Candidate", "Evaluated", "Figures",
           "FixResult", "MovedWeights", "NotApplicable", "Outputs", "Rewrite", "emit_python",
           "estimate", "fix", "render_fix", "save_weights", "transfer"]
