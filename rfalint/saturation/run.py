"""Orchestration of ``rfalint saturation``: weights -> graph -> stream data -> advice
(docs/method.md §7).

The layers measured and their names come from the shared graph (``rfalint.analyze``):
every conv/linear module in execution order (``layers="all"``) or only the convs of the
RF analysis's main path (``layers="main-path"``, the border's layer sequence), named as
everywhere else in rfalint, and next to each its receptive-field status and whether it
is in the RF tail.

The moments stay on the model's device; the stream loop never waits for the device (no
``.item()``, non-blocking copies from pinned memory), so the host prepares the next
batch while the device works. Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank streams
its shard of the data and the float64 sums are all-reduced (gloo on CPU, nccl on GPU);
the sums are exact to add, so N processes give the one-process result up to summation
order. Only rank 0 gets a result; the others get None.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from rfalint.analysis import Analysis
from rfalint.api import analyze
from rfalint.errors import ModelError, UsageError, first_line
from rfalint.graph import Kind, Node
from rfalint.saturation.advice import (Tail, TailComparison, WidthAdvice, compare_tails,
                                       find_tail, width_advice)
from rfalint.saturation.data import Source, as_source
from rfalint.saturation.stats import (LayerStats, Moments, Recorder, all_layer_stats,
                                      feature_dim)
from rfalint.weights import read_state_dict

DEVICES = ("auto", "cpu", "cuda")
# Which layers are measured: every conv/linear module, or the main path's convs (the
# dissertation's ResNet18 figures count 17 such convs, 3904 channels). s_mu depends on it.
LAYER_SETS = ("all", "main-path")


@dataclass
class LayerResult:
    name: str
    op: str
    node: int  # graph node id of the module's first call
    positions: int  # observations one sample contributes (spatial positions, or 1)
    stats: LayerStats
    rf_status: str
    in_rf_tail: bool
    in_saturation_tail: bool = False


@dataclass
class SaturationResult:
    target: str
    input_shape: tuple[int, ...]
    delta: float
    device: str
    world_size: int
    layer_set: str
    data_kind: str
    data_description: str
    smoke_test: bool
    samples: int
    weights: str | None
    layers: list[LayerResult]
    s_mu: float | None
    tail: Tail | None
    comparison: TailComparison
    advice: WidthAdvice
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rf_tail(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.in_rf_tail]


def resolve_device(request: str) -> torch.device:
    if request not in DEVICES:
        raise UsageError(f"{{device}} must be one of {', '.join(DEVICES)}, got {request!r}",
                         options=True)
    if request == "cuda" and not torch.cuda.is_available():
        raise UsageError("{device} cuda: no CUDA GPU is available to torch here", options=True)
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request == "cuda" and "LOCAL_RANK" in os.environ:
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus:
            raise UsageError(f"torchrun local rank {local} has no GPU of its own ({gpus} "
                             "visible): start at most one process per GPU, or use {device} cpu",
                             options=True)
        return torch.device("cuda", local)
    return torch.device(request)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint into ``model`` (see :func:`rfalint.weights.read_state_dict`)."""
    model.load_state_dict(read_state_dict(path, model))


def measured_layers(analysis: Analysis, layer_set: str = "all") -> list[Node]:
    """First call of every measured module, in execution order: every conv/linear module
    (``all``) or the convs of the main path (``main-path``, the border's layer sequence;
    a functional conv there has no module to hook and is left out)."""
    if layer_set not in LAYER_SETS:
        raise UsageError(f"{{layers}} must be one of {', '.join(LAYER_SETS)}, got {layer_set!r}",
                         options=True)
    if layer_set == "all":
        candidates = list(analysis.graph)
    else:
        candidates = [analysis.graph[layer.node] for layer in analysis.border.sequence]
    seen: set[int] = set()
    nodes = []
    for node in candidates:
        if node.module is not None and feature_dim(node.module) is not None \
                and id(node.module) not in seen:
            seen.add(id(node.module))
            nodes.append(node)
    return nodes


def _positions(node: Node, dim: int) -> int:
    """Observations one sample adds: every output element but the features (batch 1)."""
    shape = node.out_shape
    return math.prod(shape[1:]) // shape[dim]


class Distributed:
    """Process group from torchrun's environment, or a single process."""

    def __init__(self, device: torch.device):
        self.owned = False
        if dist.is_available() and not dist.is_initialized() \
                and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owned = True
        active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if active else 0
        self.world = dist.get_world_size() if active else 1

    def share_weights(self, model: nn.Module) -> None:
        """Give every rank rank 0's weights: an untrained model is initialised at random
        in each process, and the ranks must measure one and the same model."""
        if self.world > 1:
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, 0)

    def sum(self, tensors: list[torch.Tensor]) -> None:
        if self.world > 1:
            for t in tensors:
                dist.all_reduce(t)

    def close(self) -> None:
        if self.owned:
            dist.destroy_process_group()


def _progress(enabled: bool, total: int | None):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("saturation"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("batches"), TimeRemainingColumn(),
                        console=Console(stderr=True), disable=not enabled, transient=True)
    return progress, progress.add_task("batches", total=total)


def stream(model: nn.Module, nodes: list[Node], source: Source, batch_size: int,
           device: torch.device, ctx: Distributed, progress: bool = False,
           workers: int | None = None) -> tuple[dict[str, Moments], int, int]:
    """Run this rank's share of ``source`` through ``model``; return the moments per layer
    name, the samples read and the unreadable count, all summed over the ranks."""
    cuda = device.type == "cuda"
    batches = source.batches(batch_size, ctx.rank, ctx.world, workers, pin_memory=cuda)
    bar, task = _progress(progress and ctx.rank == 0,
                          source.batch_count(batch_size, ctx.rank, ctx.world))
    seen, number = 0, 0
    with Recorder({n.name: n.module for n in nodes}, device) as recorder, bar, \
            torch.inference_mode():
        for batch in batches:
            number += 1
            try:
                model(batch.to(device, non_blocking=cuda))
            except Exception as exc:
                raise ModelError(f"the model's forward failed on batch {number} of the data "
                                 f"({source.kind}): {type(exc).__name__}: {first_line(exc)}"
                                 ) from exc
            seen += len(batch)
            bar.advance(task)
        moments = recorder.moments()
    counts = torch.tensor([seen, len(source.unreadable)], dtype=torch.int64,
                          device=next(iter(moments.values())).n.device)
    ctx.sum([t for m in moments.values() for t in m.tensors()] + [counts])
    return moments, int(counts[0].item()), int(counts[1].item())


def run_saturation(model: nn.Module, input_shape: tuple[int, ...], data: Source | Any, *,
                   name: str = "model", delta: float = 0.99, batch_size: int = 64,
                   device: str = "auto", weights: str | Path | None = None,
                   layers: str = "all", workers: int | None = None, progress: bool = False,
                   command_for: Callable[[float], str] | None = None) -> SaturationResult | None:
    """Measure the saturation of ``model``'s layers on ``data``; None on ranks > 0.

    ``data`` is a :class:`Source`, a ``--data`` string, or a DataLoader / any iterable of
    batches (a tensor, or a tuple/list/dict whose first tensor is the input); a loader
    brings its own batch size and workers. Loads ``weights`` into ``model``, moves it to
    the device and puts it in eval mode. ``layers`` is ``all`` or ``main-path``.
    ``command_for(factor)`` renders the ``rfalint fix`` command of the width advice.
    """
    if not (0 < delta <= 1):  # also rejects NaN
        raise UsageError(f"{{delta}} must be in (0, 1], got {delta}", options=True)
    if batch_size <= 0:
        raise UsageError(f"{{batch_size}} must be positive, got {batch_size}", options=True)
    if workers is not None and workers < 0:
        raise UsageError(f"{{workers}} must be 0 or more, got {workers}", options=True)
    source = as_source(data, tuple(input_shape))
    target = resolve_device(device)
    if weights is not None:
        load_weights(model, weights)
    analysis = analyze(model, tuple(input_shape), name=name)
    nodes = measured_layers(analysis, layers)
    if not nodes:
        what = "conv or linear module" if layers == "all" else "conv module on its main path"
        raise ModelError(f"{name} has no {what} to measure")
    model.to(target).eval()
    ctx = Distributed(target)
    try:
        ctx.share_weights(model)
        moments, samples, unreadable = stream(model, nodes, source, batch_size, target, ctx,
                                              progress, workers)
    finally:
        ctx.close()
    if ctx.rank != 0:
        return None
    if samples == 0:
        total = f"{len(source)} " if len(source) else ""
        raise UsageError(f"{{data}}: none of the {total}samples could be read "
                         f"({unreadable} unreadable)", options=True)
    return _summarise(analysis, nodes, moments, source, name, delta, target, ctx.world,
                      layers, samples, unreadable, weights, command_for)


def _summarise(analysis, nodes, moments, source, name, delta, device, world, layer_set,
               samples, unreadable, weights, command_for) -> SaturationResult:
    border = analysis.border
    rf_tail = set(border.tail)
    stats = all_layer_stats(moments, delta)
    layers = [LayerResult(n.name, n.op, n.id, _positions(n, feature_dim(n.module)),
                          stats[n.name], border.status[n.id].value, n.id in rf_tail)
              for n in nodes]
    defined = [layer for layer in layers if layer.stats.defined]
    s_mu = sum(layer.stats.saturation for layer in defined) / len(defined) if defined else None
    # The tail is looked for over the layers with a defined saturation, in forward order.
    tail = find_tail([layer.stats.saturation for layer in defined])
    if tail is not None:
        for i in tail.indices:
            defined[i].in_saturation_tail = True
    names = [layer.name for layer in layers]
    comparison = compare_tails(names, [i for i, l in enumerate(layers) if l.in_saturation_tail],
                               [i for i, l in enumerate(layers) if l.in_rf_tail])
    advice = width_advice(s_mu, command_for)
    result = SaturationResult(
        name, tuple(analysis.graph.input_shape), delta, str(device), world, layer_set,
        source.kind,
        source.description, source.smoke_test, samples, str(weights) if weights else None,
        layers, s_mu, tail, comparison, advice, notes=list(source.notes))
    _warn(result, analysis, unreadable, source)
    return result


def _warn(result: SaturationResult, analysis: Analysis, unreadable: int, source: Source) -> None:
    w = result.warnings
    if result.smoke_test:
        w.append("SMOKE TEST: random inputs; the saturation of random data says nothing about "
                 "the model or its width")
    if result.weights is None:
        w.append("no --weights: this is the untrained model; saturation is meaningful on a "
                 "trained model (docs/method.md §7)")
    if unreadable:
        shown = "; ".join(source.unreadable[:3])
        w.append(f"skipped {unreadable} unreadable image{'s' if unreadable > 1 else ''}"
                 f"{f' (e.g. {shown})' if shown else ''}")
    undefined = [layer for layer in result.layers if not layer.stats.defined]
    if undefined:
        need = max(math.ceil(layer.stats.channels / layer.positions) for layer in undefined)
        w.append(f"saturation undefined for {len(undefined)} layer(s) with fewer observations "
                 f"than channels ({', '.join(layer.name for layer in undefined[:4])}"
                 f"{', ...' if len(undefined) > 4 else ''}); use at least {need} samples")
    functional = [n.name for n in analysis.graph if n.kind is Kind.CONV and n.module is None]
    if functional:
        w.append(f"{len(functional)} functional convolution(s) not measured (no module to hook): "
                 f"{', '.join(functional[:4])}")
    if not result.advice.fits and (result.tail is not None or result.rf_tail):
        result.notes.append("fix the depth first (the tail), then the width (dissertation §11.3)")
