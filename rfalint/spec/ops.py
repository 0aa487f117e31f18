"""Functional ops as modules, so that every spec layer is a named module.

A spec layer ``{name: layer1.0.add, type: add, from: [bn2, input]}`` must appear in
``named_modules()`` and in captured graphs under its name, but ``x + y`` has no name. The
builder wraps each functional op in an :class:`Op` module, one class per op of the
registry (:mod:`rfalint.ops`) that has a spec form. Each class names its op in
``rfalint_op``, which the registry reads: the capture keeps it as a leaf that stands for
the op, so a captured spec shows ``add``/``max_pool2d`` with the same geometry as the
original ``x + y`` / ``F.max_pool2d`` call.

Argument names and defaults are torch's own (``cat`` concatenates along ``dim: 0`` unless
told otherwise), so an op means in a spec what it means in Python. Two exceptions keep the
batch dimension out of specs: ``view``/``reshape`` take the per-sample ``shape``
(``x.view(x.shape[0], *shape)``), and ``dropout`` follows the module's train/eval mode.
Op modules never work in place: under the graph's dataflow the result is the same.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn

from rfalint.ops import DEFAULT, REQUIRED, Param, SpecForm

__all__ = ["OPS", "OP_CLASSES", "REQUIRED", "Op", "Param", "SpecForm"]

# Spec op name -> how a layer of it runs.
OPS: dict[str, SpecForm] = {record.name: record.spec for record in DEFAULT if record.spec}


class Op(nn.Module):
    """Base of the op modules: calls the op on its inputs with the spec's arguments."""

    rfalint_op: ClassVar[str]
    definition: ClassVar[SpecForm]

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


def _op_class(name: str, definition: SpecForm) -> type[Op]:
    camel = "".join(part.capitalize() for part in name.split("_"))
    return type(f"{camel}Op", (Op,), {"rfalint_op": name, "definition": definition,
                                      "__module__": __name__})


# Spec op name -> its module class.
OP_CLASSES: dict[str, type[Op]] = {name: _op_class(name, d) for name, d in OPS.items()}
globals().update({cls.__name__: cls for cls in OP_CLASSES.values()})  # pickling finds them by name
