"""What the tail strategies change, decided on the analysed graph, and what that costs.

``check`` prints "Candidate fixes (estimated)" and ``fix`` rewrites the model; both start
from the plans here, so the layers ``fix`` changes are the layers ``check`` priced. The
estimates build and capture nothing: they are derived from the analysed graph and its
cost per node (docs/method.md §2, "Candidate fixes").

* :func:`plan_truncate`: keep what feeds b_min's input (the *cut*), then global average
  pooling, flatten and ``Linear(channels at the cut, classes)``. Estimated params and MACs:
  the kept nodes' own, plus the new classifier's; final r_max: the cut's. Exact.
* :func:`plan_remove_stem`: the stem's strided conv becomes a 3x3 stride-1 conv of the same
  width, its strided pools go; while a tail remains, the next downsampling step (the first
  strided layer of the main path and every strided layer between the same two map sizes)
  is removed too. Each step is applied to a copy of the graph (:func:`resized`: new window
  geometry, feature-map sizes recomputed node by node) and the RF engine re-runs on it, so
  the receptive fields, the border and the tail after the rewrite are computed, not
  scaled. Params change by the replaced conv only; each node's MACs scale with its number
  of output positions (exact for convs and linear layers; the replaced conv is priced
  from its new shape). Exact unless a layer's window follows the input size (adaptive
  pooling to more than 1x1, ``interpolate(size=)``): those are refused, not guessed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction

import torch.nn as nn

from rfalint.analysis import Analysis, ObjectSize, analyze_graph
from rfalint.analysis.cost import Cost
from rfalint.errors import ModelError, UsageError
from rfalint.graph import Graph, Kind, Node, Resample, Window, fmt_axes

MAX_STEPS = 16  # downsampling steps remove-stem may remove after the stem


class NotApplicable(UsageError):
    """The strategy does not apply to this model (no head to re-attach, no stem...)."""


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
    # Sum of the units' IF gains (docs/method.md §6); None without stages, or where only
    # estimated (measured by ``fix`` on the built model, like the activation peak).
    dif_sum: float | None = None

    def reference_label(self) -> str:
        """What r_max is compared with: '32' (the input) or 'object 24'."""
        if self.reference is None:
            return fmt_axes(self.resolution)
        return f"object {fmt_axes(self.reference)}"


@dataclass
class Candidate:
    """One strategy evaluated: its figures, or why it does not apply."""

    strategy: str
    figures: Figures | None = None
    reason: str = ""


def reference_of(analysis: Analysis) -> tuple[int, ...] | None:
    return analysis.reference if analysis.object_size is not None else None


def object_sizes_of(analysis: Analysis) -> dict[str | None, ObjectSize] | None:
    """A rewritten model is checked against the original's primary object size."""
    return None if analysis.object_size is None else {None: analysis.object_size}


def tail_convs(analysis: Analysis) -> int:
    graph = analysis.graph
    return sum(1 for i in analysis.border.tail if graph[i].kind is Kind.CONV)


def strided(node: Node) -> bool:
    g = node.geometry
    return isinstance(g, Window) and not g.transposed and max(g.stride) > 1


# ----------------------------------------------------------------------------- truncate


@dataclass(frozen=True)
class TruncatePlan:
    cut: Node  # its output is kept; everything the readout needs beyond it is dropped
    kept: frozenset[int]  # node ids up to the cut
    classifier: nn.Linear  # the old classifier: its class count and bias are kept
    classifier_name: str


def plan_truncate(analysis: Analysis) -> TruncatePlan:
    graph, border = analysis.graph, analysis.border
    linears = [graph[i] for i in sorted(border.head) if isinstance(graph[i].module, nn.Linear)]
    if not linears:
        raise NotApplicable("truncate does not apply: the model has no linear classifier "
                            "after its readout to re-attach (a fully convolutional net?)")
    return TruncatePlan(graph[border.cut], frozenset(graph.ancestors(border.cut)),
                        linears[-1].module, linears[-1].name)


def estimate_truncate(analysis: Analysis, cost: Cost) -> Figures:
    plan = plan_truncate(analysis)
    channels, classes = plan.cut.out_shape[1], plan.classifier.out_features
    bias = classes if plan.classifier.bias is not None else 0
    params = sum(cost.params[i] for i in plan.kept) + channels * classes + bias
    macs = sum(cost.macs[i] for i in plan.kept) + channels * classes
    return Figures(params, macs, 0, tuple(analysis.rfs[plan.cut.id].r_max),
                   analysis.graph.resolution, None, reference_of(analysis))


# ----------------------------------------------------------------------------- remove-stem


@dataclass(frozen=True)
class Downsampling:
    """One step after the stem: strided layers between the same two map sizes."""

    layers: list[str]
    sizes: tuple[tuple[int, ...], tuple[int, ...]]  # map size before -> after the step


@dataclass
class StemPlan:
    """The layers remove-stem changes, by name, and the analysis of the result."""

    replaced: str | None = None  # the stem conv, now 3x3 stride 1 (fresh weights)
    removed: list[str] = field(default_factory=list)  # strided stem pools, bypassed
    steps: list[Downsampling] = field(default_factory=list)  # later downsampling steps
    after: Analysis | None = None  # the rewritten graph, analysed


def plan_remove_stem(analysis: Analysis) -> StemPlan:
    graph, border = analysis.graph, analysis.border
    seq = border.sequence
    stop = border.main_path.index(seq[1].node) if len(seq) > 1 else len(border.main_path)
    stem = [graph[i] for i in border.main_path[:stop]]
    if not any(strided(n) for n in stem):
        raise NotApplicable("remove-stem does not apply: there is no early downsampling (no "
                            "strided layer on the main path before its second conv)")
    plan = StemPlan()
    edits: dict[int, Window | None] = {}
    first = graph[seq[0].node]
    if strided(first):
        plan.replaced = first.name
        d = graph.spatial_dims
        edits[first.id] = Window((3,) * d, (1,) * d, (1,) * d, (1,) * d)
    for node in stem:
        if node.kind is Kind.POOL and strided(node):
            plan.removed.append(node.name)
            edits[node.id] = None
    objects = object_sizes_of(analysis)
    after = analyze_graph(resized(graph, edits, border.head), objects)
    for _ in range(MAX_STEPS):
        if not after.border.tail:
            plan.after = after
            return plan
        group, sizes = _next_downsampling(after)
        plan.steps.append(Downsampling([n.name for n in group], sizes))
        step = {n.id: None if n.kind is Kind.POOL else
                dataclasses.replace(n.geometry, stride=(1,) * len(n.geometry.stride))
                for n in group}
        after = analyze_graph(resized(after.graph, step, after.border.head), objects)
    raise ModelError(f"remove-stem: still a tail after {MAX_STEPS} steps")


def _next_downsampling(analysis: Analysis) -> tuple[list[Node], tuple]:
    graph = analysis.graph
    first = next((graph[i] for i in analysis.border.main_path if strided(graph[i])), None)
    if first is None:
        raise ModelError("remove-stem: the model still has an unproductive tail with no "
                         "downsampling left on the main path")
    sizes = (graph[first.inputs[0]].spatial_out, first.spatial_out)
    return [n for n in graph if strided(n) and
            (graph[n.inputs[0]].spatial_out, n.spatial_out) == sizes], sizes


def estimate_remove_stem(analysis: Analysis, cost: Cost) -> Figures:
    plan = plan_remove_stem(analysis)
    old, new = analysis.graph, plan.after.graph
    params, macs = cost.params_total, cost.macs_total
    for node in old:
        now = new[node.id]
        if node.name == plan.replaced:
            conv = node.module
            weights = conv.in_channels * conv.out_channels * 3 ** old.spatial_dims
            params += weights + (conv.out_channels if conv.bias is not None else 0) \
                - cost.params[node.id]
            macs += _positions(now) * weights - cost.macs[node.id]
        elif cost.macs[node.id] and node.spatial_out is not None:
            macs += cost.macs[node.id] // _positions(node) * _positions(now) - cost.macs[node.id]
    return Figures(params, macs, tail_convs(plan.after), tuple(plan.after.rf_final.r_max),
                   old.resolution, None, reference_of(plan.after))


def _positions(node: Node) -> int:
    return math.prod(node.spatial_out)


# ----------------------------------------------------------------------------- graph copy


def resized(graph: Graph, edits: dict[int, Window | None], head: set[int]) -> Graph:
    """A copy of ``graph`` with new window geometry for the nodes in ``edits`` (``None``: the
    node is bypassed and passes its input through) and every feature-map size recomputed.

    Raises :class:`NotApplicable` where a size cannot be recomputed from the geometry: the
    node's own formula does not reproduce its captured size (``ceil_mode``, output
    padding, windows that adapt to the input), or a ``head`` node or a flatten, rather than
    a global pool, reads a map whose size changed (a classifier on a flattened map).
    Non-spatial gate nodes keep their shapes: they hold no spatial positions to count.
    """
    nodes: list[Node] = []
    for node in graph:
        geometry = edits.get(node.id, node.geometry)
        kind = node.kind
        if node.id in edits and geometry is None:
            kind = Kind.POINTWISE
        out = node.out_shapes
        spatial = [i for i in node.inputs if graph[i].layout is not None]
        if spatial and node.layout is not None:
            size = _size(node, graph[spatial[0]].spatial_out, nodes[spatial[0]].spatial_out,
                         geometry, node.id in edits and geometry is None)
            shape = list(node.out_shape)
            for axis, d in enumerate(node.layout):
                shape[d] = size[axis]
            out = [tuple(shape), *node.out_shapes[1:]]
        elif (node.id in head or node.kind is Kind.GLOBAL) and not _pools(node) and \
                any(nodes[i].out_shape != graph[i].out_shape for i in node.inputs):
            raise NotApplicable(f"'{node.name}' ({node.op}) reads a feature map whose size the "
                                "rewrite changes")
        nodes.append(dataclasses.replace(node, kind=kind, geometry=geometry, out_shapes=out))
    return dataclasses.replace(graph, nodes=nodes)


def _size(node: Node, old_in: tuple[int, ...] | None, new_in: tuple[int, ...] | None,
          geometry: Window | Resample | None, bypassed: bool) -> tuple[int, ...]:
    old_out = node.spatial_out
    if old_in is None or new_in is None or node.kind is Kind.GLOBAL:
        return old_out
    if bypassed:
        return new_in
    if not isinstance(node.geometry, (Window, Resample)):
        if old_out != old_in:
            raise NotApplicable(f"'{node.name}' ({node.op}) changes the map size without a "
                                "window rfalint can recompute")
        return new_in
    if _formula(node.geometry, old_in) != old_out:
        raise NotApplicable(f"'{node.name}' ({node.op}): its output size does not follow from "
                            "its window (ceil_mode, output padding or an adaptive window)")
    if _adapts(node):
        raise NotApplicable(f"'{node.name}' ({node.op}) adapts its window to the input size")
    return _formula(geometry, new_in)


def _formula(geometry: Window | Resample, size: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(geometry, Resample):
        return tuple(math.floor(s * Fraction(f)) for s, f in zip(size, geometry.scale))
    out = []
    for n, k, s, p, d in zip(size, geometry.kernel, geometry.stride, geometry.padding,
                             geometry.dilation):
        if geometry.transposed:
            out.append((n - 1) * s - 2 * p + d * (k - 1) + 1)
        else:
            out.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return tuple(out)


_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
             nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ADAPTIVE_OPS = {f"adaptive_{k}_pool{n}d" for k in ("avg", "max") for n in (1, 2, 3)}


# Reductions over all positions: their output does not depend on the map size.
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "logsumexp", *_ADAPTIVE_OPS}


def _pools(node: Node) -> bool:
    """A global pool (the readout of most classifiers), not a flatten of the map."""
    return node.kind is Kind.GLOBAL and (isinstance(node.module, _ADAPTIVE) or
                                         (node.module is None and node.op in _REDUCTIONS))


def _adapts(node: Node) -> bool:
    """Windows computed from the captured sizes: they change with the input size."""
    if isinstance(node.module, _ADAPTIVE) or node.op in _ADAPTIVE_OPS:
        return True
    return isinstance(node.geometry, Resample) and node.call_args.get("size") is not None


# ----------------------------------------------------------------------------- estimates

ESTIMATORS = {"truncate": estimate_truncate, "remove-stem": estimate_remove_stem}


def estimate(analysis: Analysis, cost: Cost) -> list[Candidate]:
    """The tail strategies' figures for ``check``; empty without a tail. Nothing is built,
    captured or run: see the module docstring for what is estimated and how exactly."""
    if not analysis.border.tail:
        return []
    out = []
    for strategy, estimator in ESTIMATORS.items():
        try:
            out.append(Candidate(strategy, estimator(analysis, cost)))
        except (NotApplicable, ModelError) as exc:
            out.append(Candidate(strategy, reason=str(exc)))
    return out


__all__ = ["Candidate", "Downsampling", "Figures", "NotApplicable", "StemPlan", "TruncatePlan",
           "estimate",
           "object_sizes_of", "plan_remove_stem", "plan_truncate", "reference_of", "resized",
           "strided", "tail_convs"]
