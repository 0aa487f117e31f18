"""The op registry: one record per op, which users can extend.

Each op rfalint understands is declared once (:mod:`rfalint.ops.builtin`) as an
:class:`OpRecord`: its geometry (how it moves spatial positions), how torch passes its
arguments, whether it keeps its input's shape, its output shape without a kernel, its
MACs, and its spec and Python forms. A module type that behaves as one op is a
:class:`ModuleRecord`. The capture, the cost model, specs and ``fix`` all read the
registry a graph was captured with (``capture(..., registry=...)``; :data:`DEFAULT`
otherwise).

A custom layer (a CUDA extension, a deformable conv) that rfalint would otherwise see as
unknown ops is declared by its window and, optionally, its MACs::

    >>> import torch.nn as nn, rfalint
    >>> class MyConv(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.kernel_size, self.stride, self.padding = (5, 5), (2, 2), (2, 2)
    ...     def forward(self, x):
    ...         return x[:, :, ::2, ::2] * 2  # stands for a kernel rfalint cannot see
    >>> registry = rfalint.ops.DEFAULT.copy()
    >>> _ = rfalint.register_module(MyConv, window=("kernel_size", "stride", "padding"),
    ...                             registry=registry)
    >>> net = nn.Sequential(MyConv(), MyConv())
    >>> [rf.r_max for rf in rfalint.analyze(net, (3, 32, 32), registry=registry).rfs[1:]]
    [(5, 5), (13, 13)]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Union

import torch.nn as nn

from rfalint.ops.builtin import default_registry
from rfalint.ops.records import (REQUIRED, MacCounter, ModuleRecord, OpRecord, Param, Registry,
                                 SpecForm)

DEFAULT: Registry = default_registry()

# What a registered module's window may be: attribute names of the module (those it has),
# a mapping from window argument to attribute, or a function of the module.
Window = Union[Iterable[str], Mapping[str, str], Callable[[nn.Module], dict[str, Any]]]
WINDOW_ARGS = ("kernel_size", "stride", "padding", "dilation", "groups")
KINDS = {"conv": "conv", "pool": "max_pool", "transposed": "conv_transpose"}


def register_module(cls: type, *, window: Window | None = None, pointwise: bool = False,
                    kind: str = "conv", macs: MacCounter | None = None,
                    registry: Registry | None = None) -> ModuleRecord:
    """Declare that ``cls`` behaves as one op, so the capture keeps it as one node.

    ``window`` gives its sliding window (``kernel_size``, ``stride``, ``padding``,
    ``dilation``, ``groups`` as for ``nn.Conv2d``; read from the module); ``kind`` is
    ``conv`` (a conv layer: it counts in tails and critical layers), ``pool`` or
    ``transposed``. ``pointwise=True`` declares a per-position layer instead (a fused
    activation). ``macs(node, input_shapes)`` counts its multiply-accumulates; without it
    a window of kind ``conv``/``transposed`` is counted as that conv would be (the counter
    reads ``kernel_size`` and ``groups``). ``registry`` defaults to :data:`DEFAULT`, which
    every later capture in this process uses.
    """
    if (window is None) == (not pointwise):
        raise ValueError("register_module: give either window=... or pointwise=True")
    if kind not in KINDS:
        raise ValueError(f"register_module: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    record = ModuleRecord(cls, "identity" if pointwise else KINDS[kind],
                          _window_reader(window) if window is not None else _no_args, macs)
    (registry or DEFAULT).add_module(record)
    return record


def _no_args(module: nn.Module) -> dict[str, Any]:
    return {}


def _window_reader(window: Window) -> Callable[[nn.Module], dict[str, Any]]:
    if callable(window):
        return window
    names = dict(window) if isinstance(window, Mapping) else {n: n for n in window}
    wrong = [arg for arg in names if arg not in WINDOW_ARGS]
    if wrong:
        raise ValueError(f"register_module: window takes {', '.join(WINDOW_ARGS)}, "
                         f"got {', '.join(wrong)}")

    def read(module: nn.Module) -> dict[str, Any]:
        return {arg: getattr(module, attr) for arg, attr in names.items() if hasattr(module, attr)}
    return read


def register_op(record: OpRecord, registry: Registry | None = None) -> None:
    """Declare (or replace) a functional op, e.g. a custom ``torch.ops`` kernel by name."""
    (registry or DEFAULT).add_op(record)


__all__ = ["DEFAULT", "REQUIRED", "ModuleRecord", "OpRecord", "Param", "Registry", "SpecForm",
           "register_module", "register_op"]
