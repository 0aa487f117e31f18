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
from rfalint.errors import RfalintError, UsageError
from rfalint.fix.emit_python import emit_python
from rfalint.fix.output import Outputs, write_all
from rfalint.fix.report import render_fix
from rfalint.fix.strategies import Rewrite, remove_stem, truncate, width
from rfalint.fix.verify import figures, verify
from rfalint.fix.weights import Transfer, save_weights, transfer
from rfalint.spec import Document
from rfalint.weights import read_state_dict

# Strategies that remove the unproductive tail; ``auto`` chooses among them.
TAIL_STRATEGIES: dict[str, Callable[[Analysis, Document], Rewrite]] = {
    "truncate": truncate,
    "remove-stem": remove_stem,
}
STRATEGIES = (*TAIL_STRATEGIES, "width", "auto")
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
    moved: Transfer | None = None  # the original weights carried over (``weights=``)
    written: list[Path] = field(default_factory=list)  # files written, in order

    @property
    def spec(self) -> dict:
        return self.rewrite.spec

    def text(self, emit: str = "yaml", origin: str = "") -> str:
        """The rewritten model as a file: a YAML spec or Python source (``EMITTERS``)."""
        return EMITTERS[emit](self, origin)


def fix(model: nn.Module, input_shape: tuple[int, ...], strategy: str, name: str = "model",
        prefer: str = "balanced", factor: float | None = None,
        object_sizes: dict[str | None, ObjectSize] | None = None,
        weights: str | Path | None = None, outputs: Outputs = Outputs()) -> FixResult:
    """Rewrite ``model`` with ``strategy``, verify the result and write ``outputs``.

    ``weights``: a state dict file of ``model`` (read with ``weights_only=True``, checked to
    fit exactly); every surviving tensor is copied into the new model (``result.moved``)
    and ``outputs.save_weights`` receives them. Output paths are checked before any work
    and written only after verification. Raises RfalintError (UsageError: a bad option or
    a strategy that does not apply; ModelError: the result fails verification). With
    ``object_sizes`` the tail is measured against the object size (docs/method.md §5), and
    so is the re-check of the result.
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
    if outputs.emit not in EMITTERS:
        raise UsageError(f"{{emit}} must be one of {', '.join(EMITTERS)}, got "
                         f"{outputs.emit!r}", options=True)
    weights = None if weights is None else Path(weights)
    outputs.check(weights)
    state = read_state_dict(weights, model) if weights is not None else None
    result = _rewrite(model, input_shape, strategy, name, prefer, factor, object_sizes)
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
             object_sizes: dict[str | None, ObjectSize] | None) -> FixResult:
    analysis = analyze_graph(capture(model, tuple(input_shape), name=name), object_sizes)
    before = figures(model, analysis)
    recheck = object_sizes_of(analysis)
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
    for name_, apply in TAIL_STRATEGIES.items():
        try:
            rewrite = apply(analysis, doc)
            checked = verify(rewrite.document, analysis.graph.input_shape, clean=True,
                             object_sizes=recheck)
        except RfalintError as exc:
            candidates.append(Evaluated(name_, reason=str(exc)))
        else:
            candidates.append(Evaluated(name_, checked.figures, "", rewrite, checked.model))
    usable = [c for c in candidates if c.figures is not None]
    if not usable:
        raise NotApplicable("auto: no strategy applies: " +
                            "; ".join(f"{c.strategy}: {c.reason}" for c in candidates))
    best = min(usable, key=lambda c: _score(c.figures, before, prefer))
    return FixResult(best.strategy, before, best.rewrite, best.figures, best.model, candidates)


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

__all__ = ["EMITTERS", "PREFERENCES", "STRATEGIES", "Candidate", "Evaluated", "Figures",
           "FixResult", "NotApplicable", "Outputs", "Rewrite", "Transfer", "emit_python",
           "estimate", "fix", "render_fix", "save_weights", "transfer"]
