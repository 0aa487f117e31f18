"""The design strategies (docs/method.md §2) applied to a model's spec.

Which layers change is decided on the analysed graph by :mod:`rfalint.analysis.plan`,
the same plans that ``check`` prices; each strategy here applies its plan to the parsed
flat spec with :class:`~rfalint.fix.rewrite.Rewriter` and returns a :class:`Rewrite`: the
new :class:`~rfalint.spec.Document`, what was changed (in words, for the report) and which
layers got new, freshly initialised modules. They never build the final model;
:mod:`rfalint.fix.verify` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from rfalint.analysis import Analysis
from rfalint.analysis.plan import plan_remove_stem, plan_truncate, tail_convs
from rfalint.errors import UsageError
from rfalint.fix.rewrite import Rewriter
from rfalint.graph import Graph, Kind, Node, fmt_axes
from rfalint.spec import Document


@dataclass
class Rewrite:
    strategy: str
    document: Document
    changes: list[str]
    fresh: set[str] = field(default_factory=set)  # layers whose module is new
    expect: tuple[int, int] | None = None  # predicted (MACs, params), checked after the build

    @property
    def spec(self) -> dict[str, Any]:
        """The rewritten spec as plain data (what ``-o FILE`` writes as YAML)."""
        return self.document.to_data()


# ----------------------------------------------------------------------------- truncate


def truncate(analysis: Analysis, doc: Document) -> Rewrite:
    """Keep what feeds the border layer's input, then global average pooling, flatten and
    a linear classifier with the channels at the cut and the original number of classes."""
    graph, border = analysis.graph, analysis.border
    plan = plan_truncate(analysis)
    cut, classifier = plan.cut, plan.classifier
    layers = Rewriter(doc)
    kept = {graph[i].name for i in plan.kept if i != 0}
    dropped = [n for n in layers.names() if n not in kept]
    layers.keep_only(kept)
    channels = cut.out_shape[1]
    pool = layers.free_name("avgpool")
    layers.append(pool, f"AdaptiveAvgPool{graph.spatial_dims}d", cut.name, {"output_size": 1})
    flat = layers.free_name("flatten")
    layers.append(flat, "flatten", pool, {"start_dim": 1})
    head = layers.free_name(plan.classifier_name)
    args = {"in_features": channels, "out_features": classifier.out_features}
    if classifier.bias is None:
        args["bias"] = False
    layers.append(head, "Linear", flat, args)
    b_min = graph[border.b_min.node]
    changes = [f"removed the border layer '{b_min.name}' (conv #{border.b_min.index} of the "
               f"main path) and everything after it: {len(dropped)} layers, "
               f"{tail_convs(analysis)} of them conv layers in the tail",
               f"kept the output of '{cut.name}' ({channels} channels), then added global "
               f"average pooling '{pool}', '{flat}' and a new Linear({channels}, "
               f"{classifier.out_features}) '{head}'"]
    return Rewrite("truncate", layers.document(), changes, {head})


# ----------------------------------------------------------------------------- remove-stem


def remove_stem(analysis: Analysis, doc: Document) -> Rewrite:
    """The paper's stem removal, then, while a tail remains, soften the next downsampling
    (the steps of :func:`rfalint.analysis.plan.plan_remove_stem`)."""
    graph = analysis.graph
    plan = plan_remove_stem(analysis)
    layers = Rewriter(doc)
    changes: list[str] = []
    fresh: set[str] = set()
    if plan.replaced is not None:
        first = graph.by_name(plan.replaced)
        old = first.module
        args = {"in_channels": old.in_channels, "out_channels": old.out_channels,
                "kernel_size": 3, "padding": 1}
        if old.bias is None:
            args["bias"] = False
        layers.replace(first.name, type(old).__name__, args)
        fresh.add(first.name)
        g = first.geometry
        changes.append(f"'{first.name}': {fmt_axes(g.kernel)}/{fmt_axes(g.stride)} conv -> new "
                       f"3/1 conv with {old.out_channels} channels (padding 1, fresh weights)")
    for name in plan.removed:
        node = graph.by_name(name)
        layers.bypass(name)
        changes.append(f"'{name}': removed the {fmt_axes(node.geometry.kernel)}/"
                       f"{fmt_axes(node.geometry.stride)} {node.op}")
    for step in plan.steps:
        for name in step.layers:
            if graph.by_name(name).kind is Kind.POOL:
                layers.bypass(name)
            else:
                layers.args(name)["stride"] = 1
        names = ", ".join(f"'{n}'" for n in step.layers)
        changes.append(f"downsampling {fmt_axes(step.sizes[0])} -> {fmt_axes(step.sizes[1])} "
                       f"removed ({names}: convs to stride 1, pools dropped)")
    return Rewrite("remove-stem", layers.document(), changes, fresh)


# ----------------------------------------------------------------------------- width


def width(analysis: Analysis, doc: Document, factor: float) -> Rewrite:
    """Scale every conv/linear width by ``factor``, rounded to a multiple of 8.

    Kept: the input channels and the width of the last weighted layers (those with no
    conv/linear after them: the classes, or a segmentation net's output channels).
    Depthwise convs (groups == in_channels) follow their input: groups == channels.
    Channels are followed through the graph in execution order, so every layer reading
    a scaled tensor gets its new input width.
    """
    if not factor > 0 or math.isinf(factor):
        raise UsageError(f"{{factor}} must be a positive number, got {factor}", options=True)
    widen = _Widen(analysis.graph, Rewriter(doc), factor)
    for node in analysis.graph.nodes[1:]:
        widen.node(node)
    widths = ", ".join(f"{a}->{b}" for a, b in sorted(widen.mapping.items()))
    changes = [f"scaled {len(widen.done)} layers by {factor:g} (multiples of 8; input channels "
               f"and output width kept): widths {widths}"]
    return Rewrite("width", widen.layers.document(), changes, set(widen.done))


class _Widen:
    def __init__(self, graph: Graph, layers: Rewriter, factor: float):
        self.graph, self.layers, self.factor = graph, layers, factor
        self.final = _last_weighted(graph)
        self.channels: dict[int, int] = {0: graph.input_shape[0]}  # node id -> new width
        self.modules: dict[int, int] = {}  # id(module) -> new output width (shared modules)
        self.mapping: dict[int, int] = {}  # old width -> new width
        self.done: set[str] = set()  # layers whose arguments changed

    def node(self, node: Node) -> None:
        graph = self.graph
        old_in = graph[node.inputs[0]].out_shape[1] if node.inputs else None
        new_in = self.channels[node.inputs[0]] if node.inputs else None
        module = node.module
        handler = _WIDTH.get(type(module)) if module is not None else None
        if module is not None and id(module) in self.modules:
            self.channels[node.id] = self.modules[id(module)]
        elif handler is not None:
            self.channels[node.id] = self.modules[id(module)] = handler(self, node, new_in)
        elif module is not None and any(True for _ in module.parameters()):
            raise UsageError(f"width: cannot scale layer '{node.name}' ({type(module).__name__})")
        elif node.op == "cat":
            self.channels[node.id] = _cat(node, self.channels)
        elif node.op == "flatten":
            self.channels[node.id] = node.out_shape[1] // old_in * new_in
        elif old_in is not None and len(node.out_shape) > 1 and node.out_shape[1] == old_in:
            if node.op in ("view", "reshape") and new_in != old_in:
                raise UsageError(f"width: layer '{node.name}' ({node.op}) writes the channel "
                                 "count into its shape; scale this model by hand")
            self.channels[node.id] = new_in
        else:
            raise UsageError(f"width: cannot follow the channels through '{node.name}' "
                             f"({node.op})")

    def scaled(self, old: int, node: Node, groups: int = 1) -> int:
        if node.id in self.final:
            return old
        step = math.lcm(8, groups)
        new = max(step, int(round(old * self.factor / step)) * step)
        self.mapping[old] = new
        return new


def _last_weighted(graph: Graph) -> set[int]:
    """Conv/linear nodes with no conv/linear downstream: their width is the output's."""
    users = graph.consumers()
    below = [False] * len(graph)
    for node in reversed(graph.nodes):
        below[node.id] = any(isinstance(graph[u].module, _WEIGHTED) or below[u]
                             for u in users[node.id])
    return {n.id for n in graph if isinstance(n.module, _WEIGHTED) and not below[n.id]}


def _conv(widen: _Widen, node: Node, new_in: int) -> int:
    module = node.module
    args = widen.layers.args(node.name)
    old_in, groups = module.in_channels, module.groups
    if groups > 1 and groups == old_in:  # depthwise: groups follow the channels
        out = module.out_channels // old_in * new_in
        args.update(in_channels=new_in, out_channels=out, groups=new_in)
    else:
        if new_in % groups:
            raise UsageError(f"width: '{node.name}' has groups={groups}, which does not divide "
                             f"its scaled input width {new_in}")
        out = widen.scaled(module.out_channels, node, groups)
        args.update(in_channels=new_in, out_channels=out)
    widen.done.add(node.name)
    return out


def _linear(widen: _Widen, node: Node, new_in: int) -> int:
    out = widen.scaled(node.module.out_features, node)
    widen.layers.args(node.name).update(in_features=new_in, out_features=out)
    widen.done.add(node.name)
    return out


def _norm(attr: str) -> Callable[[_Widen, Node, int], int]:
    def scale(widen: _Widen, node: Node, new_in: int) -> int:
        groups = getattr(node.module, "num_groups", 1)
        if new_in % groups:
            raise UsageError(f"width: '{node.name}' has {groups} groups, which do not divide "
                             f"its scaled width {new_in}")
        widen.layers.args(node.name)[attr] = new_in
        widen.done.add(node.name)
        return new_in
    return scale


def _cat(node: Node, channels: dict[int, int]) -> int:
    dim = node.call_args.get("dim", 0)
    if dim % len(node.out_shape) != 1:
        raise UsageError(f"width: '{node.name}' concatenates along dim {dim}, not the channels")
    return sum(channels[i] for i in node.inputs)


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d)
_WEIGHTED = (*_CONVS, nn.Linear)
# Module type -> how its constructor arguments follow the new widths.
_WIDTH: dict[type, Callable[[_Widen, Node, int], int]] = {
    **{cls: _conv for cls in _CONVS},
    nn.Linear: _linear,
    **{cls: _norm("num_features") for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                                              nn.InstanceNorm1d, nn.InstanceNorm2d,
                                              nn.InstanceNorm3d)},
    nn.GroupNorm: _norm("num_channels"),
}
