"""A record of everything a model's forward did with tensors, for replay at another size.

Why: a resolution sweep would otherwise run the model's Python once per size, although
for most models the sizes change nothing that Python does. Only through torch calls can
a model's Python see its tensors: ops, but also ``x.shape``, ``x.size(2)``, ``len(x)``,
``x.is_contiguous()``; the recorder's mode sees every one of them. The tape keeps each call
in order, with its arguments (tensors replaced by references to earlier results) and what
it returned, plus the module calls the recorder's hooks saw.

A replay (:class:`rfalint.capture.Captures`) makes the same calls on tensors of the
new size and compares every non-tensor result (a size, a flag) with the recorded one, and
every failure with the recorded failure. If all agree, the model's Python would have seen
exactly the same values, so it would have made the same calls with the same arguments: the
replayed graph is the graph a capture at that size gives. Any difference, and any call the
tape cannot represent, ends the replay and the caller captures for real. The tape is
never a guess about what the Python would do.

The tape is kept only for shape-only (meta tensor) captures whose forward ran to the end.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

# Leaves that hold no tensor and that a call cannot change: arguments kept as they are,
# results compared by value.
ATOMS = (int, float, bool, str, bytes, type(None), slice, type(Ellipsis), torch.dtype,
         torch.device, torch.memory_format, torch.layout)


class Untapeable(Exception):
    """A value the tape cannot represent: the capture is still valid, but no replay."""


@dataclass(frozen=True)
class Ref:
    """The tensor that the tape's ``index``-th result (or the input, 0) stands for."""

    index: int


@dataclass(frozen=True)
class New:
    """A result that is a tensor no earlier call returned; it becomes reference ``index``."""

    index: int


@dataclass(frozen=True)
class Struct:
    """A result that is a tuple subclass (``torch.return_types.max``, a namedtuple)."""

    kind: type
    items: tuple


@dataclass
class Event:
    """One thing the recorder saw. ``kind``: "call" (a torch call that returned), "fail" (a
    torch call that raised ``result``, an exception type, which the model's Python caught),
    "pre"/"post" (a module call's hooks; ``target`` is the module), "forward" (a leaf
    forward rfalint replaced while capturing; ``target`` is the replacement) and "abort"
    (the module's forward raised, and the model's Python may have caught it)."""

    kind: str
    target: Any
    args: Any
    kwargs: Any
    result: Any = None


class Tape:
    """The events of one capture, in order (see the module docstring)."""

    def __init__(self, x: torch.Tensor, constants: dict[int, torch.Tensor]):
        self.events: list[Event] = []
        self.size = 1  # references handed out; 0 is the input
        self.broken = ""  # why this tape cannot be replayed
        self.output: Any = None  # the forward's return value, as a template
        self.last_failure: Exception | None = None  # of the latest "fail" event
        self.last_message = ""  # its message then: a handler may edit it before re-raising
        self.escaped: Exception | None = None  # the exception that ended the forward
        # tensors that exist before the forward (parameters, buffers): kept as they are
        self._constants = constants
        # A warning turned into an error (or recorded) can decide the forward's path, and a
        # replay runs outside the model's filters: a forward that enters catch_warnings or
        # adds an "error" filter is not taped (imports may add other filters harmlessly).
        self._warning_filters = warnings.filters
        self._error_filters = _error_filters()
        self._index: dict[int, int] = {id(x): 0}
        self._keep: list[torch.Tensor] = [x]  # keeps ids unique while recording

    def record(self, kind: str, target: Any, args: Any, kwargs: Any, result: Any = None
               ) -> None:
        if self.broken:
            return
        if warnings.filters is not self._warning_filters \
                or _error_filters() != self._error_filters:
            self.broken = "the forward changed how warnings are handled"
            return
        try:
            if kind in ("call", "forward"):
                result = self._result(result)
            elif kind == "post":  # the module returned what calls inside it made
                result = self._argument(result)
            event = Event(kind, target, self._argument(args), self._argument(kwargs), result)
        except Untapeable as exc:
            self.broken = str(exc)
            return
        self.events.append(event)

    def finish(self, output: Any) -> None:
        """The forward returned ``output``: the tape is complete."""
        if not self.broken:
            try:
                self.output = self._argument(output)
            except Untapeable as exc:
                self.broken = str(exc)
        self._index.clear()
        self._keep.clear()
        self._constants = {}
        self.last_failure = None  # its traceback holds the forward's frames

    def _argument(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            index = self._index.get(id(value))
            if index is not None:
                return Ref(index)
            if self._constants.get(id(value)) is value:
                return value
            # made where no torch call shows it (nn.Parameter(y), DisableTorchFunction):
            # its shape may depend on the input, so a replay cannot know it
            raise Untapeable("a tensor made outside the calls the tape sees")
        if type(value) is slice:  # x[:, :w] with w a tensor: its bounds are arguments too
            return slice(*(self._argument(v) for v in (value.start, value.stop, value.step)))
        if isinstance(value, ATOMS) or type(value) is torch.Size:
            return value
        if type(value) in (list, tuple):
            return type(value)(self._argument(v) for v in value)
        if type(value) is dict:
            return {k: self._argument(v) for k, v in value.items()}
        if isinstance(value, torch.nn.Module):
            return value  # the same object on replay (its tensors are constants too)
        raise Untapeable(f"a call took a {type(value).__name__}")

    def _result(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            index = self._index.get(id(value))
            if index is not None:
                return Ref(index)  # an in-place op or an alias returned an earlier tensor
            self._index[id(value)] = self.size
            self._keep.append(value)
            self.size += 1
            return New(self.size - 1)
        if isinstance(value, ATOMS) or type(value) is torch.Size:
            return value
        if type(value) in (list, tuple):
            return type(value)(self._result(v) for v in value)
        if type(value) is dict:
            return {k: self._result(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return Struct(type(value), tuple(self._result(v) for v in value))
        raise Untapeable(f"a call returned a {type(value).__name__}")


def _error_filters() -> int:
    return sum(1 for entry in warnings.filters if entry[0] == "error")


class Mismatch(Exception):
    """A replayed call returned or raised something else than the recorded one."""


def fill(template: Any, values: list[Any]) -> Any:
    """The template with each reference replaced by the replay's tensor."""
    kind = type(template)
    if kind is Ref:
        return values[template.index]
    if kind is tuple or kind is list:
        return kind([fill(v, values) if type(v) in _FILLED else v for v in template])
    if kind is dict:
        return {k: fill(v, values) if type(v) in _FILLED else v for k, v in template.items()}
    if kind is slice:
        return slice(fill(template.start, values), fill(template.stop, values),
                     fill(template.step, values))
    return template


_FILLED = {Ref, tuple, list, dict, slice}  # what fill() must look into; the rest stays


def bind(template: Any, result: Any, values: list[Any], seen: set[int]) -> None:
    """Check a replayed result against the recorded one; new tensors take their places.
    Raises :class:`Mismatch` where the model's Python could see a difference."""
    kind = type(template)
    if kind is New:
        if not isinstance(result, torch.Tensor) or id(result) in seen:
            raise Mismatch("a call returned another tensor")
        values[template.index] = result
        seen.add(id(result))
    elif kind is Ref:
        if result is not values[template.index]:
            raise Mismatch("a call returned another tensor")
    elif kind is Struct:
        if type(result) is not template.kind:
            raise Mismatch("a call returned another structure")
        bind(template.items, tuple(result), values, seen)
    elif kind in (list, tuple, dict):
        if type(result) is not kind or len(result) != len(template):
            raise Mismatch("a call returned another structure")
        if kind is dict:
            if result.keys() != template.keys():
                raise Mismatch("a call returned other keys")
            for key, item in template.items():
                bind(item, result[key], values, seen)
        else:
            for item, got in zip(template, result):
                bind(item, got, values, seen)
    elif type(result) is not kind or result != template:
        raise Mismatch(f"a call returned {result!r}, the capture saw {template!r}")
