"""Functional ops as modules, so that every spec layer is a named module.

A spec layer ``{name: layer1.0.add, type: add, from: [bn2, input]}`` must appear in
``named_modules()`` and in captured graphs under its name, but ``x + y`` has no name. The
builder wraps each functional op in an :class:`Op` module. These module types are
registered in the capture op table (:func:`rfalint.capture.ops.register_op_module`) as
leaves that stand for the op they wrap, so a captured spec shows ``add``/``max_pool2d``
with the same RF handler as the original ``x + y`` / ``F.max_pool2d`` call.

Argument names and defaults are torch's own (``cat`` concatenates along ``dim: 0`` unless
told otherwise), so an op means in a spec what it means in Python. Two exceptions keep the
batch dimension out of specs: ``view``/``reshape`` take the per-sample ``shape``
(``x.view(x.shape[0], *shape)``), and ``dropout`` follows the module's train/eval mode.
Op modules never work in place: under the graph's dataflow the result is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from rfalint.capture import ops as capture_ops

REQUIRED = object()  # marks a parameter without default

Size = Union[int, tuple[int, ...]]
Dims = Optional[Union[int, tuple[int, ...]]]


@dataclass(frozen=True)
class Param:
    hint: Any  # checked by rfalint.spec.types.convert
    default: Any = REQUIRED


@dataclass(frozen=True)
class OpDef:
    """One functional op: what it computes, how many inputs, which parameters.

    ``arity`` None means one or more inputs (``cat``). ``positional_loss`` marks ops whose
    arguments the capture cannot see when passed positionally to a C function
    (``x.clamp(0, 6)``): export refuses them unless every argument was recorded.
    """

    fn: Callable[..., torch.Tensor]
    arity: int | None = 1
    params: dict[str, Param] = field(default_factory=dict)
    positional_loss: bool = False
    uses_training: bool = False


def _reduce(method: str) -> Callable[..., torch.Tensor]:
    def run(x, dim=None, keepdim=False):
        if dim is None:
            return getattr(x, method)()
        return getattr(x, method)(dim, keepdim=keepdim)
    return run


def _squeeze(x, dim=None):
    return x.squeeze() if dim is None else x.squeeze(dim)


_REDUCE_PARAMS = {"dim": Param(Dims, None), "keepdim": Param(bool, False)}
_POOL = {"kernel_size": Param(Size), "stride": Param(Optional[Size], None),
         "padding": Param(Size, 0)}
_MAX_POOL = {**_POOL, "dilation": Param(Size, 1), "ceil_mode": Param(bool, False)}
_AVG_POOL = {**_POOL, "ceil_mode": Param(bool, False), "count_include_pad": Param(bool, True)}
_DIVISOR = {"divisor_override": Param(Optional[int], None)}
_ADAPTIVE = {"output_size": Param(Union[int, None, tuple[Optional[int], ...]])}


def _unary(fn: Callable[..., torch.Tensor], **params: Param) -> OpDef:
    return OpDef(fn, 1, params)


OPS: dict[str, OpDef] = {
    # merges
    "add": OpDef(torch.add, 2),
    "sub": OpDef(torch.sub, 2),
    "mul": OpDef(torch.mul, 2),
    "div": OpDef(torch.div, 2),
    "maximum": OpDef(torch.maximum, 2),
    "minimum": OpDef(torch.minimum, 2),
    "cat": OpDef(lambda *xs, dim=0: torch.cat(xs, dim=dim), None, {"dim": Param(int, 0)}),
    "expand_as": OpDef(lambda x, other: x.expand_as(other), 2),
    # activations and other per-position ops
    "relu": _unary(F.relu),
    "relu6": _unary(F.relu6),
    "silu": _unary(F.silu),
    "sigmoid": _unary(torch.sigmoid),
    "tanh": _unary(torch.tanh),
    "hardswish": _unary(F.hardswish),
    "hardsigmoid": _unary(F.hardsigmoid),
    "mish": _unary(F.mish),
    "gelu": _unary(F.gelu, approximate=Param(str, "none")),
    "contiguous": _unary(lambda x: x.contiguous()),
    "leaky_relu": OpDef(F.leaky_relu, 1, {"negative_slope": Param(float, 0.01)}, True),
    "elu": OpDef(F.elu, 1, {"alpha": Param(float, 1.0)}, True),
    "softplus": OpDef(F.softplus, 1, {"beta": Param(float, 1.0),
                                       "threshold": Param(float, 20.0)}, True),
    "hardtanh": OpDef(F.hardtanh, 1, {"min_val": Param(float, -1.0),
                                       "max_val": Param(float, 1.0)}, True),
    "clamp": OpDef(torch.clamp, 1, {"min": Param(Optional[float], None),
                                     "max": Param(Optional[float], None)}, True),
    "dropout": OpDef(lambda x, p=0.5, training=False: F.dropout(x, p, training), 1,
                     {"p": Param(float, 0.5)}, True, uses_training=True),
    "softmax": _unary(lambda x, dim: F.softmax(x, dim=dim), dim=Param(int)),
    "log_softmax": _unary(lambda x, dim: F.log_softmax(x, dim=dim), dim=Param(int)),
    "normalize": _unary(F.normalize, p=Param(float, 2.0), dim=Param(int, 1),
                        eps=Param(float, 1e-12)),
    # windows and resampling
    **{f"max_pool{n}d": _unary(getattr(F, f"max_pool{n}d"), **_MAX_POOL) for n in (1, 2, 3)},
    "avg_pool1d": _unary(F.avg_pool1d, **_AVG_POOL),
    **{f"avg_pool{n}d": _unary(getattr(F, f"avg_pool{n}d"), **_AVG_POOL, **_DIVISOR)
       for n in (2, 3)},
    **{f"adaptive_{kind}_pool{n}d": _unary(getattr(F, f"adaptive_{kind}_pool{n}d"), **_ADAPTIVE)
       for kind in ("avg", "max") for n in (1, 2, 3)},
    "interpolate": _unary(F.interpolate, size=Param(Optional[Size], None),
                          scale_factor=Param(Optional[Union[float, tuple[float, ...]]], None),
                          mode=Param(str, "nearest"), align_corners=Param(Optional[bool], None),
                          recompute_scale_factor=Param(Optional[bool], None),
                          antialias=Param(bool, False)),
    "pixel_shuffle": _unary(F.pixel_shuffle, upscale_factor=Param(int)),
    "pixel_unshuffle": _unary(F.pixel_unshuffle, downscale_factor=Param(int)),
    "pad": _unary(F.pad, pad=Param(tuple[int, ...]), mode=Param(str, "constant"),
                  value=Param(Optional[float], None)),
    # shapes and reductions
    "flatten": _unary(torch.flatten, start_dim=Param(int, 0), end_dim=Param(int, -1)),
    "view": _unary(lambda x, shape: x.view(x.shape[0], *shape), shape=Param(tuple[int, ...])),
    "reshape": _unary(lambda x, shape: x.reshape(x.shape[0], *shape),
                      shape=Param(tuple[int, ...])),
    "permute": _unary(lambda x, dims: x.permute(*dims), dims=Param(tuple[int, ...])),
    "transpose": _unary(torch.transpose, dim0=Param(int), dim1=Param(int)),
    "squeeze": _unary(_squeeze, dim=Param(Dims, None)),
    "unsqueeze": _unary(torch.unsqueeze, dim=Param(int)),
    **{name: _unary(_reduce(name), **_REDUCE_PARAMS) for name in ("mean", "sum", "amax", "amin")},
}


class Op(nn.Module):
    """Base of the op modules: calls the op on its inputs with the spec's arguments."""

    op: ClassVar[str]
    definition: ClassVar[OpDef]

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.kwargs = {name: kwargs.get(name, p.default) for name, p in self.definition.params.items()}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.definition.uses_training:
            return self.definition.fn(*inputs, **self.kwargs, training=self.training)
        return self.definition.fn(*inputs, **self.kwargs)

    def extra_repr(self) -> str:
        params = self.definition.params
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if v != params[k].default)


def _op_class(name: str, definition: OpDef) -> type[Op]:
    camel = "".join(part.capitalize() for part in name.split("_"))
    cls = type(f"{camel}Op", (Op,), {"op": name, "definition": definition,
                                     "__module__": __name__})
    return cls


OP_MODULES: dict[str, type[Op]] = {name: _op_class(name, d) for name, d in OPS.items()}
globals().update({cls.__name__: cls for cls in OP_MODULES.values()})  # pickling finds them by name

for _cls in OP_MODULES.values():
    capture_ops.register_op_module(_cls, _cls.op, lambda m: dict(m.kwargs))
