"""The records of the op registry, and the registry itself.

Everything rfalint knows about an op sits in one :class:`OpRecord`: how it moves spatial
positions (its geometry, for RFs), how torch passes its arguments, whether its output has
its input's shape, its output shape without a kernel, its MACs, its spec form and its
Python form. A module type that behaves as an op is one :class:`ModuleRecord` pointing at
that op. :class:`Registry` looks both up; the capture, the cost model, specs and ``fix``
read the registry a graph was captured with, so an analysis can extend a copy of it
without touching global state (fvcore's ``set_op_handle`` works the same way per counter).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from rfalint.capture.geometry import Handler
    from rfalint.graph import Node

REQUIRED = object()  # marks a spec parameter without default

Size = Union[int, tuple[int, ...]]
Shape = tuple[int, ...]
# Multiply-accumulates of one captured node, from the node (its call_args, out_shape and
# module) and the shapes of its graph inputs.
MacCounter = Callable[["Node", list[Shape]], int]
ShapeFunction = Callable[[dict[str, Any]], Any]
# How ``fix --emit python`` writes a call: input expressions and spec args -> Python.
Writer = Callable[[list[str], dict[str, Any]], str]


@dataclass(frozen=True)
class Param:
    """A spec parameter: its type hint (checked by rfalint.spec.types.convert), default."""

    hint: Any
    default: Any = REQUIRED


@dataclass(frozen=True)
class SpecForm:
    """How a spec layer of the op runs: the function, how many inputs, which parameters.

    ``arity`` None means one or more inputs (``cat``). ``positional_loss`` marks ops whose
    arguments the capture cannot see when passed positionally to a C function
    (``x.clamp(0, 6)``): export refuses them unless every argument was recorded.
    """

    fn: Callable[..., torch.Tensor]
    arity: int | None = 1
    params: dict[str, Param] = field(default_factory=dict)
    positional_loss: bool = False
    uses_training: bool = False


@dataclass(frozen=True)
class OpRecord:
    """One functional op, declared once.

    ``name`` is the normalised torch name (``conv2d``, ``add``, ``cat``); module records
    also use the generic forms (``conv``, ``max_pool``, ``identity``). ``macs`` None means
    the op does no multiply-accumulates, unless ``uncounted`` says it does some that the
    graph cannot size (``einsum``): the cost model then lists it as skipped.
    """

    name: str
    geometry: "Handler"
    signature: tuple[str, ...] = ()  # positional parameter names, bound the way torch does
    aliases: tuple[str, ...] = ()  # other names torch calls it by (concat, swapaxes, __iadd__)
    shape_preserving: bool = False  # output has the input's shape: no compute without data
    shape: ShapeFunction | None = None  # output shape without a kernel (rfalint.capture.shapes)
    macs: MacCounter | None = None
    uncounted: bool = False
    spec: SpecForm | None = None  # None: no spec layer of this op
    python: Writer | None = None  # None: written as the call of ``spec.fn``


@dataclass(frozen=True)
class ModuleRecord:
    """A module type that behaves as one op: a leaf of the captured graph.

    ``read_args`` reads the op's arguments from the module (kernel size, stride...).
    ``macs`` overrides the op's counter (a custom layer that costs what it costs).
    ``shows_op``: the graph shows the op's name instead of the class name (the op modules
    of :mod:`rfalint.spec.ops`, which stand for ``x + y`` and ``F.max_pool2d``).
    """

    type: type
    op: str
    read_args: Callable[[nn.Module], dict[str, Any]]
    macs: MacCounter | None = None
    shows_op: bool = False


# Methods a subclass may override without changing what its forward computes.
_NOT_CALLED_BY_FORWARD = frozenset({"extra_repr", "reset_parameters", "reset_running_stats",
                                    "_load_from_state_dict", "_save_to_state_dict"})


class Registry:
    """Op and module records, looked up by normalised name and by module type.

    >>> from rfalint.ops import DEFAULT
    >>> DEFAULT.resolve("__iadd__").name, DEFAULT.resolve("concat").name
    ('add', 'cat')
    >>> DEFAULT.module_record(nn.Conv2d(3, 8, 3)).op
    'conv'
    """

    def __init__(self, ops: Iterable[OpRecord] = (), modules: Iterable[ModuleRecord] = ()):
        self._ops: dict[str, OpRecord] = {}
        self._names: dict[str, str] = {}  # alias -> name
        self._modules: dict[type, ModuleRecord] = {}
        self._subclasses: dict[type, ModuleRecord | None] = {}  # undeclared types seen
        for record in ops:
            self.add_op(record)
        for module in modules:
            self.add_module(module)

    def __iter__(self):
        return iter(self._ops.values())

    def copy(self) -> "Registry":
        """An independent registry with the same records, to extend for one analysis."""
        return Registry(self._ops.values(), self._modules.values())

    # ------------------------------------------------------------------ declaring

    def add_op(self, record: OpRecord) -> None:
        """Declare (or replace) an op under its name and aliases."""
        self._ops[record.name] = record
        self._names[record.name] = record.name
        for alias in record.aliases:
            self._names[alias] = record.name

    def add_module(self, record: ModuleRecord) -> None:
        """Declare (or replace) a leaf module type; its op must be declared."""
        if record.op not in self._ops:
            raise ValueError(f"{record.type.__name__}: no op '{record.op}' is declared")
        self._modules[record.type] = record
        self._subclasses.clear()

    # ------------------------------------------------------------------ looking up

    def op(self, name: str) -> OpRecord | None:
        return self._ops.get(name)

    def normalise(self, raw: str) -> str:
        """A torch function's name as declared: ``__iadd__`` -> ``add``, ``relu_`` ->
        ``relu``, ``concat`` -> ``cat``; unknown names are only stripped."""
        name = raw
        if name.startswith("__") and name.endswith("__"):
            name = name[2:-2]
        elif name.endswith("_") and not name.startswith("_"):
            name = name[:-1]
        return self._names.get(name, name)

    def resolve(self, raw: str) -> OpRecord | None:
        return self._ops.get(self.normalise(raw))

    def module_record(self, module: nn.Module) -> ModuleRecord | None:
        """The record ``module`` provably behaves as, or None if rfalint descends into it.

        A declared type qualifies, and so does a subclass that overrides none of its
        base's methods (a ``class MyBN(nn.BatchNorm2d): pass``). A subclass with a method
        of its own (a norm+activation layer with its own ``forward``, a "same"-padding conv
        that overrides ``_conv_forward``) or an instance with a patched ``forward`` is
        ordinary code: the tracer records the ops it runs. A module class with a string
        attribute ``rfalint_op`` stands for that op (rfalint.spec's op modules).
        """
        if "forward" in vars(module):
            return None
        cls = type(module)
        record = self._modules.get(cls)
        if record is None:
            if cls not in self._subclasses:
                self._subclasses[cls] = self._inherited(cls)
            record = self._subclasses[cls]
        if record is None and isinstance(getattr(cls, "rfalint_op", None), str) \
                and cls.rfalint_op in self._ops:
            record = ModuleRecord(cls, cls.rfalint_op, lambda m: dict(m.kwargs), shows_op=True)
        return record

    def _inherited(self, cls: type) -> ModuleRecord | None:
        base = next((b for b in cls.__mro__[1:] if b in self._modules), None)
        if base is None:
            return None
        for sub in cls.__mro__[:cls.__mro__.index(base)]:
            if any(callable(v) and hasattr(base, k) for k, v in vars(sub).items()
                   if k not in _NOT_CALLED_BY_FORWARD and (not k.startswith("__") or k == "__call__")):
                return None
        return replace(self._modules[base], type=cls)

    def module_types(self) -> list[type]:
        return list(self._modules)

    def macs_of(self, node: "Node") -> tuple[MacCounter | None, bool]:
        """A node's MAC counter, and whether it does MACs nobody counts (never both)."""
        if node.module is not None:
            record = self.module_record(node.module)
            if record is None:
                return None, False
            if record.macs is not None:
                return record.macs, False
            op = self._ops[record.op]
        else:
            op = self._ops.get(node.op)
            if op is None:
                return None, True  # an op rfalint does not know may do anything
        return op.macs, op.uncounted
