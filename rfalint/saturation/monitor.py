"""Saturation during training: hooks that update the moments on the forward passes they
see, and a report on demand (docs/method.md §7).

delve, the seed author's library, is mostly used this way: train, and each epoch look at
which layers' outputs fill their feature space. The hooks and the accumulation are those
of ``rfalint saturation`` (:class:`rfalint.saturation.stats.Recorder`), so the cost per
recorded pass is the streaming cost; ``every=k`` records only every k-th forward pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from rfalint.errors import UsageError
from rfalint.saturation.advice import Tail, find_tail
from rfalint.saturation.stats import LayerStats, Recorder, all_layer_stats, feature_dim


@dataclass
class MonitorReport:
    """Per-layer saturation (in the order the layers first ran), s_mu and the tail."""

    layers: dict[str, LayerStats]
    s_mu: float | None
    tail: list[str]  # names of the saturation tail's layers, empty when there is none
    tail_stats: Tail | None

    def saturation(self) -> dict[str, float | None]:
        return {name: stats.saturation for name, stats in self.layers.items()}

    def metrics(self, prefix: str = "saturation/") -> dict[str, float]:
        """Flat numbers for a logger: one per layer with a defined saturation, s_mu and
        the tail length."""
        out = {f"{prefix}{name}": s for name, s in self.saturation().items() if s is not None}
        if self.s_mu is not None:
            out[f"{prefix}s_mu"] = self.s_mu
        out[f"{prefix}tail_layers"] = float(len(self.tail))
        return out

    def __str__(self) -> str:
        s_mu = "undefined" if self.s_mu is None else f"{self.s_mu:.1%}"
        tail = f"{self.tail[0]} .. {self.tail[-1]} ({len(self.tail)} layers)" if self.tail \
            else "none"
        values = " ".join(f"{name}={'-' if s is None else f'{s:.0%}'}"
                          for name, s in self.saturation().items())
        return f"s_mu {s_mu}, saturation tail {tail}; {values}"


def _select(model: nn.Module, layers: str | Sequence[str],
            input_shape: tuple[int, ...] | None) -> dict[str, nn.Module]:
    if isinstance(layers, str) and layers == "all":
        return {name: m for name, m in model.named_modules() if feature_dim(m) is not None}
    if isinstance(layers, str) and layers == "main-path":
        if input_shape is None:
            raise UsageError("layers='main-path' needs input_shape=(C, *spatial) to find the "
                             "main path")
        from rfalint.api import analyze
        from rfalint.saturation.run import measured_layers

        return {n.name: n.module for n in measured_layers(analyze(model, tuple(input_shape)),
                                                          "main-path")}
    if isinstance(layers, str):
        raise UsageError(f"layers must be 'all', 'main-path' or a list of module names, got "
                         f"{layers!r}")
    modules = dict(model.named_modules())
    chosen = {}
    for name in layers:
        if name not in modules or feature_dim(modules[name]) is None:
            raise UsageError(f"layers: {name!r} is not a conv or linear module of the model")
        chosen[name] = modules[name]
    return chosen


class Monitor:
    """``with Monitor(model) as monitor: ...train...; print(monitor.report())``.

    ``layers``: ``"all"`` (every conv/linear module), ``"main-path"`` (the convs of the
    RF main path; needs ``input_shape``) or a list of module names. ``every``: record
    every k-th forward pass of ``model``. Recording covers every pass while attached, in
    training and evaluation alike; :meth:`paused` (or :meth:`pause` / :meth:`resume`)
    excludes some, such as a validation loop.
    :meth:`reset` starts a new window (an epoch). ``float64=False`` forces the
    compensated float32 sums that devices without float64 use.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str] = "all", every: int = 1,
                 input_shape: tuple[int, ...] | None = None, delta: float = 0.99,
                 float64: bool | None = None):
        if not 0 < delta <= 1:
            raise UsageError(f"delta must be in (0, 1], got {delta}")
        if not isinstance(every, int) or every < 1:
            raise UsageError(f"every must be a positive integer, got {every!r}")
        self.model, self.every, self.delta, self.float64 = model, every, delta, float64
        self.modules = _select(model, layers, input_shape)
        if not self.modules:
            raise UsageError("the model has no conv or linear module to monitor")
        self.recorder: Recorder | None = None

    def attach(self) -> "Monitor":
        """Register the hooks (again after :meth:`detach`, keeping nothing)."""
        if self.recorder is None:
            device = next(self.model.parameters(), torch.empty(0)).device
            self.recorder = Recorder(self.modules, device, self.every, self.model, self.float64)
        return self

    def detach(self) -> None:
        if self.recorder is not None:
            self.recorder.remove()
            self.recorder = None

    def __enter__(self) -> "Monitor":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def reset(self) -> None:
        """Forget the moments seen so far (hooks stay)."""
        if self.recorder is not None:
            self.detach()
            self.attach()

    def pause(self) -> None:
        """Stop recording until :meth:`resume` (a validation loop)."""
        if self.recorder is not None:
            self.recorder.paused = True

    def resume(self) -> None:
        if self.recorder is not None:
            self.recorder.paused = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Forward passes inside this block are not recorded."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def report(self, all_ranks: bool = False) -> MonitorReport:
        """Saturation of each layer from the passes recorded so far. ``all_ranks``: sum the
        moments over the ``torch.distributed`` processes first (every rank must call it)."""
        if self.recorder is None:
            raise UsageError("the monitor is not attached: use it as a context manager or "
                             "call attach()")
        moments = self.recorder.moments()
        if all_ranks and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            for m in moments.values():
                for tensor in m.tensors():
                    dist.all_reduce(tensor)
        stats = all_layer_stats(moments, self.delta)
        order = self.recorder.order + [n for n in stats if n not in self.recorder.order]
        stats = {name: stats[name] for name in order}
        defined = [(name, s.saturation) for name, s in stats.items() if s.defined]
        s_mu = sum(v for _, v in defined) / len(defined) if defined else None
        tail = find_tail([v for _, v in defined])
        names = [defined[i][0] for i in tail.indices] if tail is not None else []
        return MonitorReport(stats, s_mu, names, tail)
