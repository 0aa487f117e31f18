"""Stage 3, cost: parameters and multiply-accumulates (MACs) per graph node.

The tool's argument is cost: unproductive layers spend parameters and compute for nothing.
:func:`measure` puts a number on every node of the shared :class:`~rfalint.graph.Graph`,
so any set of node ids (the tail, the critical layers, what a rewrite removes) can be
priced with :meth:`Cost.share`.

Convention (the same for both counters, so their totals agree):

* **1 MAC = one fused multiply-add; FLOPs = 2 x MACs.** fvcore's "flops" are MACs; the
  papers' "FLOPs" are MACs too. ``torch.utils.flop_counter.FlopCounterMode`` reports
  FLOPs, i.e. twice our number.
* MACs count convolutions (any dims, grouped, dilated, strided, transposed), linear layers
  and matrix products (matmul/mm/bmm, plus addmm/einsum under fvcore). Bias additions are
  not counted (neither fvcore nor FlopCounterMode counts them).
* Everything else counts **0**: residual adds and other elementwise ops, max/avg/adaptive/
  global pooling, normalisation (batch/group/layer/instance), activations, upsampling,
  concatenation and reshapes. fvcore's default handles for norms, upsampling and adaptive
  pooling are switched off to keep this convention; the ops fvcore skips (it has no handle
  for ``aten::add_``, ``aten::max_pool2d`` ...) are listed with counts in
  :attr:`Cost.skipped_ops`, never hidden.

Counters (:attr:`Cost.counter`):

* ``"rfalint-graph"`` (default): a table-driven counter over the captured graph, from its
  shapes and the layers' kernel sizes and groups. No forward pass runs. Functional ops
  whose MACs it cannot derive are listed in :attr:`Cost.skipped_ops`; under ``"auto"``
  they make fvcore count the model instead, and :attr:`Cost.fallback_reason` says why.
* ``"fvcore"`` (the cross-check; ``--cost-counter fvcore``): ``FlopCountAnalysis(...)
  .by_module()`` on a real zero input of the analysed shape. Its per-module totals go to
  the graph's leaf-module nodes. A module called several times (nodes ``name``,
  ``name@2``...) has one fvcore total; it is split between the calls in proportion to
  each call's MACs on the rfalint graph (equal shares when those are all 0). Functional
  ops (``F.conv2d`` in a custom forward) have no module of their own, so their nodes take
  the graph count. MACs fvcore found that no node holds are kept in the total as
  :attr:`Cost.macs_unattributed`. When fvcore's ``torch.jit.trace`` fails, or the head
  fails at this resolution (``Graph.head_error``), the graph count stands and the reason
  is kept in :attr:`Cost.fallback_reason`. The test suite asserts that both counters
  agree node by node on every fixture.

Parameters: each leaf module's parameters go to its first call (a shared module counts
once). Parameters a functional op uses (``F.conv2d(x, self.weight, self.bias)``) are found
by shape among the unclaimed parameters of the module whose forward made the call. The
total counts every distinct parameter of the model once; what no node claims (modules never
called, ...) is :attr:`Cost.params_unattributed`.

Example::

    >>> import torch.nn as nn
    >>> from rfalint.capture import capture
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    >>> cost = measure(net, capture(net, (3, 8, 8)))
    >>> cost.counter, cost.params_total, cost.macs_total, cost.flops_total
    ('rfalint-graph', 224, 13824, 27648)
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Iterable, Iterator

import torch
import torch.nn as nn

from rfalint.analysis.border import Border, LayerStatus
from rfalint.ops import DEFAULT, MacCounter, macs
from rfalint.errors import ModelError, UsageError
from rfalint.graph import Graph, Node

FVCORE, GRAPH = "fvcore", "rfalint-graph"
COUNTERS = ("auto", FVCORE, GRAPH)


@dataclass(frozen=True)
class Share:
    """The cost of a set of nodes, absolute and as a fraction of the model's total."""

    params: int
    macs: int
    params_fraction: float
    macs_fraction: float


@dataclass
class Cost:
    """Parameters and MACs per node id, the totals, and how they were counted."""

    params: list[int]  # per node id
    macs: list[int]  # per node id
    params_total: int
    macs_total: int
    counter: str  # FVCORE or GRAPH
    skipped_ops: dict[str, int]  # op -> calls the counter did not count (0 MACs)
    fallback_reason: str | None = None  # why the other counter was used, when one was tried

    @property
    def flops_total(self) -> int:
        return 2 * self.macs_total

    @property
    def params_unattributed(self) -> int:
        return self.params_total - sum(self.params)

    @property
    def macs_unattributed(self) -> int:
        return self.macs_total - sum(self.macs)

    def share(self, node_ids: Iterable[int]) -> Share:
        ids = set(node_ids)
        params = sum(self.params[i] for i in ids)
        macs = sum(self.macs[i] for i in ids)
        return Share(params, macs, params / self.params_total if self.params_total else 0.0,
                     macs / self.macs_total if self.macs_total else 0.0)


def regions(border: Border) -> dict[str, list[int]]:
    """The node sets whose share the reports state: the tail and the critical nodes."""
    return {"tail": list(border.tail),
            "critical": [i for i, status in enumerate(border.status)
                         if status is LayerStatus.CRITICAL]}


def measure(model: nn.Module, graph: Graph, counter: str = "auto") -> Cost:
    """Count parameters and MACs of ``model`` per node of ``graph`` (its capture).

    ``counter``: ``"auto"`` (default) uses rfalint's graph counter, which needs no forward
    pass, and falls back to fvcore only where the graph counter meets an op it cannot
    count (the reason says which); ``"rfalint-graph"`` never runs a forward; ``"fvcore"``
    runs fvcore's traced forward and raises :class:`ModelError` when it fails. Like
    capture, fvcore puts the model in eval mode (a traced forward in train mode would
    update batch-norm statistics).
    """
    if counter not in COUNTERS:
        raise UsageError(f"{{counter}} must be one of {', '.join(COUNTERS)}, got {counter!r}",
                         options=True)
    registry = graph.registry or DEFAULT
    counters = [registry.macs_of(node) for node in graph]  # (counter, uncounted) per node
    params = _node_params(model, graph, counters)
    params_total = sum(p.numel() for p in model.parameters())
    graph_macs = [count(node, _input_shapes(graph, node)) if count is not None and node.inputs
                  else 0 for node, (count, _) in zip(graph, counters)]
    # functional ops that may do MACs the graph counter does not count
    skipped = Counter(n.op for n, (_, uncounted) in zip(graph, counters)
                      if n.id and n.module is None and uncounted)
    if counter == GRAPH or (counter == "auto" and not skipped):
        return Cost(params, graph_macs, params_total, sum(graph_macs), GRAPH, dict(skipped))
    reason = None
    try:
        if graph.head_error:  # fvcore's forward would fail there too, after all the compute
            raise RuntimeError(f"the head fails at this resolution: {graph.head_error}")
        by_module, total, fv_skipped = _fvcore(model, graph)
    except Exception as exc:  # jit tracing fails in many model-specific ways
        if counter == FVCORE:
            raise ModelError(f"fvcore could not count this model: {_one_line(exc)}") from exc
        reason = f"fvcore failed ({_one_line(exc)})"
    else:
        macs = _attribute(model, graph, by_module, graph_macs)
        reason = None if counter == FVCORE else \
            f"the graph counter cannot count {', '.join(sorted(skipped))}: fvcore counted"
        return Cost(params, macs, params_total, max(total, sum(macs)), FVCORE,
                    dict(fv_skipped), reason)
    return Cost(params, graph_macs, params_total, sum(graph_macs), GRAPH, dict(skipped), reason)


def _one_line(exc: Exception, limit: int = 100) -> str:
    """jit errors span several lines; reports show one, shortened."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- fvcore

# fvcore handle (in ``fvcore.nn.jit_handles``) per aten op that does multiply-accumulates.
_FVCORE_MAC_HANDLES = {"aten::_convolution": "conv_flop_jit", "aten::linear": "linear_flop_jit",
                       "aten::addmm": "addmm_flop_jit", "aten::matmul": "matmul_flop_jit",
                       "aten::mm": "matmul_flop_jit", "aten::bmm": "bmm_flop_jit",
                       "aten::einsum": "einsum_flop_jit"}
# fvcore's other default handles: 0 MACs by our convention, so neither counted nor skipped.
_FVCORE_ZERO = ("aten::batch_norm", "aten::group_norm", "aten::layer_norm",
                "aten::instance_norm", "aten::upsample_nearest2d", "aten::upsample_bilinear2d",
                "aten::adaptive_avg_pool2d", "aten::grid_sampler")


def _fvcore(model: nn.Module, graph: Graph) -> tuple[Counter[str], int, Counter[str]]:
    """fvcore's MACs per module name, its total, and the ops it skipped, all silenced."""
    fvcore_nn = _fvcore_nn()
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    x = torch.zeros((1, *graph.input_shape), dtype=param.dtype if param is not None else None,
                    device=param.device if param is not None else None)
    model.eval()
    with _quiet(), _hooks_restored(model), torch.no_grad():
        handles = {op: getattr(fvcore_nn.jit_handles, fn)
                   for op, fn in _FVCORE_MAC_HANDLES.items()}
        analysis = (fvcore_nn.FlopCountAnalysis(model, (x,))
                    .clear_op_handles()
                    .set_op_handle(**handles, **{op: None for op in _FVCORE_ZERO})
                    .unsupported_ops_warnings(False)
                    .uncalled_modules_warnings(False)
                    .tracer_warnings("none"))
        # fvcore's einsum handle returns floats; MACs are whole numbers.
        by_module = Counter({name: int(n) for name, n in analysis.by_module().items()})
        return by_module, int(analysis.total()), analysis.unsupported_ops()


def _fvcore_nn() -> ModuleType:
    """``fvcore.nn``, imported on first use (not every rfalint run counts) and quietly:
    its import scripts functions with the deprecated ``torch.jit.script``."""
    with _quiet():
        import fvcore.nn
    return fvcore.nn


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep torch.jit's deprecation/tracer warnings and fvcore's logging from users."""
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


@contextmanager
def _hooks_restored(model: nn.Module) -> Iterator[None]:
    """fvcore removes its scope hooks only when tracing succeeds; drop them on failure too,
    so a failed count leaves the user's model exactly as it was."""
    before = {m: {name: set(getattr(m, name, {})) for name in _HOOK_DICTS}
              for m in model.modules()}
    try:
        yield
    finally:
        for module, keys in before.items():
            for name, old in keys.items():
                hooks = getattr(module, name, {})
                for key in set(hooks) - old:
                    del hooks[key]


def _attribute(model: nn.Module, graph: Graph, by_module: Counter[str],
               graph_macs: list[int]) -> list[int]:
    """Per-node MACs: fvcore's module totals on leaf-module nodes, split between calls."""
    macs = list(graph_macs)  # functional nodes keep the graph count
    names = {m: n for n, m in model.named_modules()}  # first name, as fvcore's canonical one
    calls: dict[nn.Module, list[int]] = {}
    for node in graph:
        if node.module is not None and node.module in names:
            calls.setdefault(node.module, []).append(node.id)
    for module, ids in calls.items():
        shares = _split(by_module[names[module]], [graph_macs[i] for i in ids])
        for node_id, value in zip(ids, shares):
            macs[node_id] = value
    return macs


def _split(total: int, weights: list[int]) -> list[int]:
    """Integers summing to ``total`` in proportion to ``weights`` (equal if all are 0)."""
    if sum(weights) == 0:
        weights = [1] * len(weights)
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    parts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(parts)), key=lambda i: parts[i] - exact[i])
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts


# --------------------------------------------------------------------------- graph counter


def _input_shapes(graph: Graph, node: Node) -> list[tuple[int, ...]]:
    slots = node.input_slots or [0] * len(node.inputs)
    return [graph[src].out_shapes[slot] for src, slot in zip(node.inputs, slots)]


# --------------------------------------------------------------------------- parameters

_WEIGHTED = (macs.conv, macs.conv_transpose, macs.linear)


def _weight_shapes(graph: Graph, node: Node,
                   count: MacCounter | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Weight and bias shapes a functional conv/linear call (MAC counter ``count``) must
    have used."""
    if count not in _WEIGHTED or not node.inputs:
        return None
    x, out = _input_shapes(graph, node)[0], node.out_shape
    if count is macs.linear:
        return (out[-1], x[-1]), (out[-1],)
    kernel, groups = macs.conv_args(node)
    c_in, c_out = x[-len(kernel) - 1], out[-len(kernel) - 1]
    if count is macs.conv_transpose:
        return (c_in, c_out // groups, *kernel), (c_out,)
    return (c_out, c_in // groups, *kernel), (c_out,)


def _node_params(model: nn.Module, graph: Graph,
                 counters: list[tuple[MacCounter | None, bool]]) -> list[int]:
    params = [0] * len(graph)
    claimed: set[int] = set()
    for node in graph:  # leaf modules first, so functional calls never take their weights
        if node.module is not None:
            for p in node.module.parameters():
                if id(p) not in claimed:
                    claimed.add(id(p))
                    params[node.id] += p.numel()
    owners = dict(model.named_modules())
    for node in graph:
        shapes = None if node.module is not None else \
            _weight_shapes(graph, node, counters[node.id][0])
        scope = owners.get(node.scope)
        if shapes is None or scope is None:
            continue
        weight_shape, bias_shape = shapes
        for module in scope.modules():
            own = [p for p in module.parameters(recurse=False) if id(p) not in claimed]
            weight = next((p for p in own if tuple(p.shape) == weight_shape), None)
            if weight is None:
                continue
            found = [weight]
            if node.call_args.get("bias", ...) is not None:  # None only when passed as None
                found += [p for p in own if tuple(p.shape) == bias_shape][:1]
            for p in found:
                claimed.add(id(p))
                params[node.id] += p.numel()
            break
    return params
