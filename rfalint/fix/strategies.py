"""The design strategies (SCIENCE.md §3): which layers to change, decided on the analysis.

Each strategy reads the analysed graph of the original model, edits its flat spec with
:class:`~rfalint.fix.rewrite.Layers` and returns a :class:`Rewrite`: the new spec, what
was changed (in words, for the report) and which layers got new, freshly initialised
modules. They never build the final model; :mod:`rfalint.fix.verify` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from rfalint.analysis import Analysis
from rfalint.errors import ModelError, UsageError
from rfalint.fix.rewrite import Layers
from rfalint.fix.verify import object_sizes_of, probe
from rfalint.graph import Graph, Kind, Node, Window


class NotApplicable(UsageError):
    """The strategy does not apply to this model (no head to re-attach, no stem...)."""


@dataclass
class Rewrite:
    strategy: str
    spec: dict[str, Any]
    changes: list[str]
    fresh: set[str] = field(default_factory=set)  # layers whose module is new
    expect: tuple[int, int] | None = None  # predicted (MACs, params), checked after the build


def _strided(node: Node) -> bool:
    g = node.geometry
    return isinstance(g, Window) and not g.transposed and max(g.stride) > 1


def _axes(values) -> str:
    return "x".join(str(v) for v in values) if len(set(values)) > 1 else str(values[0])


# ----------------------------------------------------------------------------- truncate


def truncate(analysis: Analysis, spec: dict[str, Any]) -> Rewrite:
    """Keep what feeds the border layer's input, then global average pooling, flatten and
    a linear classifier with the channels at the cut and the original number of classes."""
    graph, border = analysis.graph, analysis.border
    linears = [graph[i] for i in sorted(border.head) if isinstance(graph[i].module, nn.Linear)]
    if not linears:
        raise NotApplicable("truncate does not apply: the model has no linear classifier "
                            "after its readout to re-attach (a fully convolutional net?)")
    classifier = linears[-1].module
    cut = graph[border.cut]
    layers = Layers(spec)
    kept = {graph[i].name for i in graph.ancestors(border.cut) if i != 0}
    dropped = [n for n in layers.names() if n not in kept]
    layers.keep_only(kept)
    channels = cut.out_shape[1]
    pool = layers.free_name("avgpool")
    layers.append(pool, f"AdaptiveAvgPool{graph.spatial_dims}d", cut.name, {"output_size": 1})
    flat = layers.free_name("flatten")
    layers.append(flat, "flatten", pool, {"start_dim": 1})
    head = layers.free_name(linears[-1].name)
    args = {"in_features": channels, "out_features": classifier.out_features}
    if classifier.bias is None:
        args["bias"] = False
    layers.append(head, "Linear", flat, args)
    b_min = graph[border.b_min.node]
    convs = sum(1 for i in border.tail if graph[i].kind is Kind.CONV)
    changes = [f"removed the border layer '{b_min.name}' (conv #{border.b_min.index} of the "
               f"main path) and everything after it: {len(dropped)} layers, {convs} of them "
               "conv layers in the tail",
               f"kept the output of '{cut.name}' ({channels} channels), then added global "
               f"average pooling '{pool}', '{flat}' and a new Linear({channels}, "
               f"{classifier.out_features}) '{head}'"]
    return Rewrite("truncate", layers.to_spec(), changes, {head})


# ----------------------------------------------------------------------------- remove-stem

MAX_STEPS = 16


def remove_stem(analysis: Analysis, spec: dict[str, Any]) -> Rewrite:
    """The paper's stem removal, then, while a tail remains, soften the next downsampling.

    The stem is the main path up to its second conv. Its first conv, if strided, becomes a
    3x3 stride-1 conv of the same width under the same name (new weights: the shape
    changes); its strided pools are removed. Each further step takes the first strided
    layer of the main path and every strided layer between the same two feature-map
    sizes (a residual block's shortcut), sets convs to stride 1 and removes pools.
    """
    graph, border = analysis.graph, analysis.border
    seq = border.sequence
    stop = border.main_path.index(seq[1].node) if len(seq) > 1 else len(border.main_path)
    stem = [graph[i] for i in border.main_path[:stop]]
    if not any(_strided(n) for n in stem):
        raise NotApplicable("remove-stem does not apply: there is no early downsampling (no "
                            "strided layer on the main path before its second conv)")
    layers = Layers(spec)
    changes: list[str] = []
    fresh: set[str] = set()
    first = graph[seq[0].node]
    if _strided(first):
        old = first.module
        args = {"in_channels": old.in_channels, "out_channels": old.out_channels,
                "kernel_size": 3, "padding": 1}
        if old.bias is None:
            args["bias"] = False
        layers.replace(first.name, type(old).__name__, args)
        fresh.add(first.name)
        g = first.geometry
        changes.append(f"'{first.name}': {_axes(g.kernel)}/{_axes(g.stride)} conv -> new 3/1 "
                       f"conv with {old.out_channels} channels (padding 1, fresh weights)")
    for node in stem:
        if node.kind is Kind.POOL and _strided(node):
            layers.bypass(node.name)
            changes.append(f"'{node.name}': removed the {_axes(node.geometry.kernel)}/"
                           f"{_axes(node.geometry.stride)} {node.op}")
    spec = layers.to_spec()
    for _ in range(MAX_STEPS):
        _, after = probe(spec, graph.input_shape, object_sizes_of(analysis))
        if not after.border.tail:
            return Rewrite("remove-stem", spec, changes, fresh)
        spec, step = _soften(after, spec)
        changes.append(step)
    raise ModelError(f"remove-stem: still a tail after {MAX_STEPS} steps")


def _soften(analysis: Analysis, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    graph = analysis.graph
    first = next((graph[i] for i in analysis.border.main_path if _strided(graph[i])), None)
    if first is None:
        raise ModelError("remove-stem: the model still has an unproductive tail with no "
                         "downsampling left on the main path")
    sizes = (graph[first.inputs[0]].spatial_out, first.spatial_out)
    group = [n for n in graph if _strided(n) and
             (graph[n.inputs[0]].spatial_out, n.spatial_out) == sizes]
    layers = Layers(spec)
    for node in group:
        if node.kind is Kind.POOL:
            layers.bypass(node.name)
        else:
            layers.args(node.name)["stride"] = 1
    names = ", ".join(f"'{n.name}'" for n in group)
    return layers.to_spec(), (f"downsampling {_axes(sizes[0])} -> {_axes(sizes[1])} removed "
                              f"({names}: convs to stride 1, pools dropped)")


# ----------------------------------------------------------------------------- width


def width(analysis: Analysis, spec: dict[str, Any], factor: float) -> Rewrite:
    """Scale every conv/linear width by ``factor``, rounded to a multiple of 8.

    Kept: the input channels and the width of the last weighted layers (those with no
    conv/linear after them: the classes, or a segmentation net's output channels).
    Depthwise convs (groups == in_channels) follow their input: groups == channels.
    Channels are followed through the graph in execution order, so every layer reading
    a scaled tensor gets its new input width.
    """
    if not factor > 0 or math.isinf(factor):
        raise UsageError(f"--factor must be a positive number, got {factor}")
    widen = _Widen(analysis.graph, Layers(spec), factor)
    for node in analysis.graph.nodes[1:]:
        widen.node(node)
    widths = ", ".join(f"{a}->{b}" for a, b in sorted(widen.mapping.items()))
    changes = [f"scaled {len(widen.done)} layers by {factor:g} (multiples of 8; input channels "
               f"and output width kept): widths {widths}"]
    return Rewrite("width", widen.layers.to_spec(), changes, set(widen.done))


class _Widen:
    def __init__(self, graph: Graph, layers: Layers, factor: float):
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
