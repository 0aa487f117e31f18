"""rfalint's rules. Codes: RFA1xx geometry of the receptive field, RFA2xx analysis coverage."""

from __future__ import annotations

from typing import Iterator

from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from rfalint.analysis import Analysis, covers
from rfalint.analysis.region import placement
from rfalint.capture.gates import GateKind
from rfalint.graph import Kind, fmt_axes
from rfalint.rules.base import Example, Finding, Rule, Severity


def _px(analysis: Analysis) -> str:
    """The reference the border rules compare with: '32 px' (image) or 'object 32 px'."""
    return analysis.reference_label()


def _convs(*widths: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 2))


class _ResidualStack(nn.Module):
    """Stem conv and three identity-shortcut blocks: r_max outgrows r_min."""

    def __init__(self, blocks: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
            for _ in range(blocks))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return x.mean((2, 3))


class _SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class _Rolled(nn.Module):
    """torch.roll shifts positions in a way rfalint does not model."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.roll(x, 1, dims=-1))


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 5, padding=2)

    def forward(self, x):
        return self.a(x) if x.mean() > 0 else self.b(x)


class UnproductiveLayer(Rule):
    code = "RFA101"
    name = "unproductive-layer"
    severity = Severity.ERROR
    summary = "Layer past the border: its input RF already covers the whole image"
    explanation = (
        "A conv layer whose input receptive field is larger than the input on every axis "
        "(r_min of the previous layer of the main path > I, and so for every later layer) "
        "cannot integrate new spatial information. The paper calls the first such layer the "
        "border layer b_min; it and everything after it up to the readout is the "
        "unproductive tail, which adds parameters and compute without improving accuracy. "
        "Convs off the main path (shortcut projections) that truncation would remove are "
        "reported too.")
    remedy = "truncate the tail at b_min (rfalint fix --strategy truncate) or slow RF growth"
    valid = [Example(lambda: _convs(3, 8, 8, 8), (3, 8, 8))]
    invalid = [Example(lambda: _convs(3, 8, 8, 8, 8, 8, 8), (3, 8, 8))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        border = analysis.border
        if border.b_min is None:
            return
        seq = {layer.node: layer for layer in border.sequence}
        b_name = analysis.layer_name(border.b_min.node)
        for node_id in border.tail:
            node = analysis.graph[node_id]
            if node.kind is not Kind.CONV:
                continue
            if node_id in seq:
                r = fmt_axes(seq[node_id].r_in_min)
                where = "border layer b_min" if node_id == border.b_min.node else "past the border"
                msg = f"input r_min {r} > {_px(analysis)} ({where})"
            else:
                msg = f"off the main path, removed with the tail that starts at {b_name}"
            yield self.finding(node.name, msg)


class CriticalLayer(Rule):
    code = "RFA102"
    name = "critical-layer"
    severity = Severity.INFO
    summary = "Some paths into the layer already cover the image, others do not"
    explanation = (
        "In multi-path networks the input RF of a layer ranges from r_min to r_max. When "
        "r_max > I but r_min <= I the layer may or may not be productive: it is critical. "
        "This is information, not a defect: in Richter et al.'s probes of residual nets the "
        "border by r_max (b_max) 'has no apparent effect on the development of the solution "
        "quality', and the layers between b_max and b_min are productive as often as not; "
        "only b_min predicts where improvement stops (docs/method.md §2). So RFA102 is "
        "severity info, and a CI that fails on warnings does not fail every ResNet at 32 px "
        "on layers the method itself does not condemn. Probe or measure saturation before "
        "removing a critical layer.")
    remedy = "check saturation on trained weights (rfalint saturation) before changing it"
    valid = [Example(lambda: _ResidualStack(3), (3, 16, 16))]
    invalid = [Example(lambda: _ResidualStack(3), (3, 8, 8))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        size = analysis.reference
        tail = set(analysis.border.tail)
        for layer in analysis.border.sequence:
            if layer.node in tail or not covers(layer.r_in_max, size):
                continue
            msg = (f"input r_max {fmt_axes(layer.r_in_max)} > {_px(analysis)}, r_min "
                   f"{fmt_axes(layer.r_in_min)} fits")
            yield self.finding(analysis.layer_name(layer.node), msg)


class DegenerateKernel(Rule):
    code = "RFA103"
    name = "degenerate-kernel"
    severity = Severity.WARNING
    summary = "Kernel footprint covers the whole input feature map"
    explanation = (
        "A conv whose input map is no larger than its kernel footprint on every axis sees "
        "the whole map and the padding around it at once: it behaves like a fully "
        "connected layer over padding (ResNet18 at 32 px runs most layer4 convs on 1x1 maps).")
    remedy = "downsample later, use a higher input resolution, or remove the layer"
    valid = [Example(lambda: _convs(3, 8, 8, stride=2), (3, 32, 32))]
    invalid = [Example(lambda: _convs(3, 8, 8, stride=2), (3, 4, 4))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        for node in analysis.graph:
            if node.kind is not Kind.CONV or node.layout is None or node.geometry is None:
                continue
            footprint = node.geometry.footprint()
            size_in = tuple(node.in_shape[d] for d in node.layout)
            if max(footprint) > 1 and all(s <= f for s, f in zip(size_in, footprint)):
                msg = (f"input map {fmt_axes(size_in)} <= kernel footprint "
                       f"{fmt_axes(footprint)}")
                yield self.finding(node.name, msg)


class UnderCoverage(Rule):
    code = "RFA104"
    name = "under-coverage"
    severity = Severity.WARNING
    summary = "The final feature map never sees the whole image"
    explanation = (
        "If r_max of the feature map entering the readout is smaller than the input on "
        "some axis, no unit ever integrates the whole image: patterns larger than r_max "
        "cannot be detected.")
    remedy = "add layers or downsampling, or lower the input resolution"
    valid = [Example(lambda: _convs(3, 8, 8), (3, 4, 4))]
    invalid = [Example(lambda: _convs(3, 8, 8), (3, 32, 32))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        if not analysis.complete:  # the final RF is a guess (RFA201 says why)
            return
        final = analysis.rf_final.r_max
        size = analysis.reference
        if any(r < s for r, s in zip(final, size)):
            msg = f"final r_max {fmt_axes(final)} < {_px(analysis)}"
            yield self.finding(analysis.layer_name(analysis.border.end), msg)


class ResolutionRange(Rule):
    code = "RFA105"
    name = "resolution-range"
    severity = Severity.INFO
    summary = "Input resolutions for which the network has no tail and covers the image"
    explanation = (
        "Receptive fields do not depend on the input size, so the resolution range with no "
        "unproductive layer and full coverage follows from the RFs: at least the last "
        "layer's input r_min (else the tail appears), at most the final r_max (else "
        "under-coverage). Reported when the current resolution is outside it. Adaptive "
        "pooling and size-based interpolation make RFs size-dependent; then the range is "
        "an estimate from this resolution.")
    remedy = "run at a resolution inside the range, or change the architecture"
    valid = [Example(lambda: _convs(3, 8, 8, 8), (3, 6, 6))]
    invalid = [Example(lambda: _convs(3, 8, 8, 8), (3, 32, 32))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        seq = analysis.border.sequence
        if not seq or not analysis.complete:  # the RFs are guesses (RFA201 says why)
            return
        lo = seq[-1].r_in_min
        hi = analysis.rf_final.r_max
        size = analysis.reference
        inside = all(l <= s <= h for l, s, h in zip(lo, size, hi))
        if inside:
            return
        layer = analysis.layer_name(analysis.border.end)
        if any(l > h for l, h in zip(lo, hi)):
            what = "object size" if analysis.object_size is not None else "input resolution"
            yield self.finding(layer, f"no {what} gives both no tail and full coverage")
            return
        if len(set(lo)) == 1 and len(set(hi)) == 1:
            rng, axes = f"{lo[0]}..{hi[0]}", ""
        else:
            rng, axes = ", ".join(f"{l}..{h}" for l, h in zip(lo, hi)), " per axis"
        what = "objects" if analysis.object_size is not None else "inputs"
        yield self.finding(layer, f"no tail and full coverage for {what} of {rng} px{axes}; "
                                  f"running at {_px(analysis)}")


class _Residual(nn.Module):
    """``x + branch(x)``: aligned with a 3x3 conv padded by 1. An even 2x2 kernel with
    "same" padding (0 before, 1 after, as PyTorch and TF pad it) or a 3x3 branch padded
    on one side only shifts the branch's fields."""

    PADS = {"": (3, (1, 1, 1, 1)), "even": (2, (0, 1, 0, 1)), "one-sided": (3, (2, 0, 2, 0))}

    def __init__(self, shift: str = ""):
        super().__init__()
        kernel, self.pad = self.PADS[shift]
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, kernel)

    def forward(self, x):
        x = self.stem(x)
        return x + self.branch(F.pad(x, self.pad))


class _SpaceToDepth(nn.Module):
    """YOLOv5's Focus stem: four phases of the image stacked on channels, then a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
                                    x[..., 1::2, 1::2]], 1))


def _amount(value: Fraction) -> str:
    return f"{int(value):+d}" if value.denominator == 1 else f"{float(value):+.3g}"


class MisalignedMerge(Rule):
    code = "RFA106"
    name = "misaligned-merge"
    severity = Severity.WARNING
    summary = "A merge combines units whose receptive fields are centred at different places"
    explanation = (
        "An add, mul or cat combines unit u of each operand. When the operands' fields are "
        "not centred on the same input position (same effective stride S and the same centre "
        "offset (r - 1)/2 - P, averaged over the phases of upsampled maps), every merged unit "
        "mixes features of misregistered positions. Usual causes: a residual branch padded "
        "off by one, an even kernel with PyTorch's 'same' padding (0 before, 1 after), a "
        "decoder that crops or pads its skip connection on one side, TF-style 'same' padding "
        "(F.pad(x, (0, 1, 0, 1)) before a strided conv). The finding gives the offset in "
        "input pixels and in feature cells (units of S). Severity: a warning, except for a "
        "cat of operands that read identical fields shifted by less than one cell (a "
        "space-to-depth stem such as YOLO's Focus, or pixel_unshuffle written by hand): "
        "there the shift is the point, every phase lands in its own channels and the next "
        "layer sees them all, so it is reported as info. Such merges widen the union of the "
        "fields, which r_max reports exactly (docs/method.md §4).")
    remedy = "pad symmetrically (odd kernels, padding (k-1)/2) or crop the skip connection centrally"
    valid = [Example(_Residual, (3, 16, 16))]
    invalid = [Example(lambda: _Residual("even"), (3, 16, 16)),
               Example(lambda: _Residual("one-sided"), (3, 16, 16)),
               Example(_SpaceToDepth, (3, 16, 16))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        graph = analysis.graph
        for node in graph:
            if node.kind is not Kind.MERGE or node.layout is None:
                continue
            operands = [src for pos, src in enumerate(node.inputs)
                        if pos not in node.gates and analysis.rfs[src] is not None]
            regions = [analysis.rfs[src].region for src in operands]
            if len(operands) < 2 or any(r is None for r in regions):
                continue  # offsets unknown: RFA201 already says why
            places = [tuple(placement(axis) for axis in region) for region in regions]
            where = [tuple((p.stride, p.centre) if p else None for p in place) for place in places]
            if all(w == where[0] and None not in w for w in where):
                continue
            yield self._misaligned(analysis, node, operands, places)

    def _misaligned(self, analysis: Analysis, node, operands, places) -> Finding:
        graph = analysis.graph
        first = places[0]
        if any(p is None for place in places for p in place) or \
                any(p.stride != f.stride for place in places for p, f in zip(place, first)):
            strides = " vs ".join(
                fmt_axes(str(a.stride) if a else "mixed" for a in place) for place in places)
            message = (f"operands {self._names(graph, operands)} have different effective "
                       f"strides ({strides} px per unit): their fields drift apart along the map")
            return self.finding(node.name, message)
        offsets = [tuple(p.centre - f.centre for p, f in zip(place, first)) for place in places]
        worst = max(range(1, len(places)), key=lambda i: sum(abs(o) for o in offsets[i]))
        shift = offsets[worst]
        cells = tuple(o / f.stride for o, f in zip(shift, first))
        phases = node.op == "cat" and all(
            p.widths == f.widths for place in places for p, f in zip(place, first)) and \
            all(abs(c) < 1 for offset in offsets for c in (o / f.stride for o, f in
                                                           zip(offset, first)))
        shifted = sum(1 for o in offsets if any(o))
        message = (f"'{graph[operands[worst]].name}' is centred {fmt_axes(map(_amount, shift))} "
                   f"px ({fmt_axes(map(_amount, cells))} cells) from "
                   f"'{graph[operands[0]].name}'")
        if shifted > 1:
            message += f" ({shifted} of {len(operands)} operands offset)"
        if phases:
            message += ": phase-shifted sampling of the same field (space-to-depth)"
            return Finding(self.code, Severity.INFO, node.name, message, "", self.name)
        return self.finding(node.name, message)

    @staticmethod
    def _names(graph, operands) -> str:
        return ", ".join(f"'{graph[src].name}'" for src in operands)


class IncompleteAnalysis(Rule):
    code = "RFA201"
    name = "incomplete-analysis"
    severity = Severity.WARNING
    summary = "An op that may change spatial geometry is not understood"
    explanation = (
        "rfalint knows how convs, pools, resampling, merges, reshapes and pointwise ops move "
        "spatial positions. Any other op on a feature map is passed through as if it did "
        "not change the RF, which may be wrong: the RFs after it are a lower bound.")
    remedy = "open an issue with the op, or wrap it in a module rfalint can skip"
    valid = [Example(lambda: _convs(3, 8), (3, 8, 8))]
    invalid = [Example(_Rolled, (3, 8, 8))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        for node in analysis.graph:
            if node.kind is Kind.UNKNOWN:
                where = node.scope or "the top-level forward"
                yield self.finding(node.name, f"analysis incomplete: {node.op} at {where} "
                                              f"({node.note})")


class _SpatialGate(nn.Module):
    """CBAM's spatial gate: a full-size sigmoid map from a 7x7 conv of its own."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 1, 7, padding=3)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(self.gate(x))


class GateExcluded(Rule):
    code = "RFA202"
    name = "gate-excluded"
    severity = Severity.INFO
    summary = "An attention/gating branch is excluded from the spatial RF"
    explanation = (
        "A gate multiplies a feature map by weights that a branch of its own computes with a "
        "sigmoid or a softmax: channel gates (squeeze-and-excitation, CBAM's channel "
        "attention), spatial gates (CBAM's 7x7 map, BAM, attention U-Net skips) and "
        "branch-selection gates (the softmax of selective-kernel and split-attention "
        "blocks, whose weighted branches stay feature paths). By default rfalint excludes "
        "the gating branch from the RF and keeps its layers off the main path, as the "
        "papers do: gates rescale features but do not move the tail, and a gate built on a "
        "global pool would otherwise make every later RF the whole image. Each gate is "
        "listed once with its kind. `rfalint check --include-gates` (library: "
        "rfalint.analyze(..., include_gates=True), analyze_graph(graph, include_gates=True)) "
        "counts full-size gates as feature paths and gives the literal max over every path "
        "instead.")
    remedy = ""
    valid = [Example(lambda: _convs(3, 8), (3, 8, 8))]
    invalid = [Example(_SqueezeExcite, (3, 8, 8)), Example(_SpatialGate, (3, 8, 8))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        graph = analysis.graph
        for node_id, kind in sorted(graph.gate_kinds.items()):
            node = graph[node_id]
            gate_names = ", ".join(graph[node.inputs[g]].name for g in node.gates)
            yield self.finding(node.name, f"{GateKind(kind).value} gate {gate_names} excluded "
                                          "from the RF")


class DataDependentCapture(Rule):
    code = "RFA203"
    name = "data-dependent-forward"
    severity = Severity.INFO
    summary = "The forward reads tensor values; the graph is that of one dummy input"
    explanation = (
        "rfalint captures the graph without computing (fake tensors). A forward whose Python "
        "control flow reads tensor values needs real data, so it was run on a random dummy "
        "input, and the graph is the branch that input took.")
    remedy = "make sure the branch taken on a random input is the one you deploy"
    valid = [Example(lambda: _convs(3, 8), (3, 8, 8))]
    invalid = [Example(_DataDependent, (3, 8, 8))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        if analysis.graph.capture_mode == "real":
            yield self.finding(None, "forward depends on tensor values; captured on a random "
                                     "dummy input")


class _FixedHead(nn.Module):
    """A classifier sized for 8x8 feature maps, as torchvision's VGG is for 224 px."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
        self.classifier = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class HeadMismatch(Rule):
    code = "RFA204"
    name = "head-mismatch"
    severity = Severity.WARNING
    summary = "The classifier head does not run at this resolution"
    explanation = (
        "Heads that flatten a fixed-size map into a Linear layer only accept one input "
        "resolution. rfalint captured everything up to the head and analysed the feature "
        "extractor; the head itself was not run, so its cost is missing.")
    remedy = "use global average pooling before the classifier, or check at the trained size"
    valid = [Example(_FixedHead, (3, 16, 16))]
    invalid = [Example(_FixedHead, (3, 32, 32))]

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        if analysis.graph.head_error:
            yield self.finding(None, f"head failed at {fmt_axes(analysis.graph.resolution)} px: "
                                     f"{analysis.graph.head_error}")


RULES: list[Rule] = [UnproductiveLayer(), CriticalLayer(), DegenerateKernel(), UnderCoverage(),
                     ResolutionRange(), MisalignedMerge(), IncompleteAnalysis(), GateExcluded(),
                     DataDependentCapture(), HeadMismatch()]
