"""The allowlist of layer types a spec may name, and checking their arguments.

Two kinds of type: the ``torch.nn`` layers the op registry knows as leaves (so every
spec layer is one graph node under its own name), and rfalint's functional ops
(:mod:`rfalint.spec.ops`). Nothing else can be built, whatever the YAML says. Arguments
are checked against the constructor's type hints before anything is constructed, so a
wrong value is reported at its YAML line instead of as a torch traceback.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union

import torch.nn as nn

from rfalint.ops import DEFAULT
from rfalint.spec.ops import OP_CLASSES, OPS, REQUIRED, Param

# Constructor parameters that place or share tensors rather than define the architecture.
NOT_SPEC_ARGS = frozenset({"device", "dtype", "process_group"})


class ArgError(ValueError):
    """An argument does not fit; ``arg`` names it (None: the argument list as a whole)."""

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.arg = arg


@dataclass(frozen=True)
class LayerType:
    """A type a spec may name: how to construct it and which arguments it takes."""

    name: str
    factory: Callable[..., nn.Module]
    params: dict[str, Param]  # in positional order
    arity: int | None  # inputs the layer takes; None for one or more
    is_op: bool

    def bind(self, args: Any) -> dict[str, Any]:
        """Check ``args`` (mapping or positional list) and return constructor kwargs."""
        if args is None:
            args = {}
        if isinstance(args, list):
            if len(args) > len(self.params):
                raise ArgError(f"{self.name} takes at most {len(self.params)} positional args "
                               f"({', '.join(self.params) or 'none'}), got {len(args)}")
            args = dict(zip(self.params, args))
        elif not isinstance(args, dict):
            raise ArgError(f"'args' must be a mapping or a list, got {_kind(args)}")
        out = {}
        for key, value in args.items():
            if key not in self.params:
                raise ArgError(f"unknown arg '{key}' for {self.name}{suggest(str(key), self.params)}"
                               f" (it takes: {', '.join(self.params) or 'no args'})", str(key))
            try:
                out[key] = convert(value, self.params[key].hint)
            except ArgError as exc:
                raise ArgError(f"arg '{key}' of {self.name}: {exc}", key) from None
        missing = [k for k, p in self.params.items() if p.default is REQUIRED and k not in out]
        if missing:
            raise ArgError(f"{self.name} is missing required arg{'s' if len(missing) > 1 else ''} "
                           + ", ".join(f"'{m}'" for m in missing))
        return out


def _nn_type(cls: type[nn.Module]) -> LayerType:
    hints = typing.get_type_hints(cls.__init__)
    params = {}
    for p in inspect.signature(cls).parameters.values():
        if p.name in NOT_SPEC_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = REQUIRED if p.default is p.empty else p.default
        params[p.name] = Param(hints.get(p.name, Any), default)
    return LayerType(cls.__name__, cls, params, 1, False)


def _op_type(name: str) -> LayerType:
    definition = OPS[name]
    return LayerType(name, OP_CLASSES[name], dict(definition.params), definition.arity, True)


def _allowlist() -> dict[str, LayerType]:
    nn_classes = [cls for cls in DEFAULT.module_types() if getattr(nn, cls.__name__, None) is cls]
    table = {cls.__name__: _nn_type(cls) for cls in nn_classes}
    table.update({name: _op_type(name) for name in OPS})
    return table


TYPES: dict[str, LayerType] = _allowlist()


def lookup(name: Any) -> LayerType:
    if not isinstance(name, str) or name not in TYPES:
        hint = suggest(str(name), TYPES) if isinstance(name, str) else ""
        raise ArgError(f"unknown type '{name}'{hint}")
    return TYPES[name]


def suggest(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` or '': a case-insensitive match first, then a close one."""
    choices = [str(c) for c in choices]
    same_case = [c for c in choices if c.lower() == word.lower()]
    close = same_case or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ----------------------------------------------------------------------------- values


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string '{value}'"
    if isinstance(value, list):
        return f"list {value}"
    return f"{type(value).__name__} {value!r}"


def describe(hint: Any) -> str:
    """A hint in words: ``int or list of 2 ints``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            inner = dict.fromkeys(describe(a) for a in args)
            return f"list of {len(args)} {'/'.join(inner)}s"
        return f"list of {describe(args[0]) if args else 'value'}s"
    return getattr(hint, "__name__", str(hint))


def convert(value: Any, hint: Any) -> Any:
    """``value`` checked against a constructor hint; YAML lists become tuples where the
    hint asks for a tuple. Raises :class:`ArgError` saying what was expected."""
    result = _convert(value, hint)
    if result is _NO:
        raise ArgError(f"expected {describe(hint)}, got {_kind(value)}")
    return result


_NO = object()


def _convert(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value if _plain(value) else _NO
    if hint is type(None):
        return value if value is None else _NO
    if origin in (Union, types.UnionType):
        for arg in args:
            result = _convert(value, arg)
            if result is not _NO:
                return result
        return _NO
    if origin is Literal:
        return value if value in args and isinstance(value, str) else _NO
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _NO
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _NO
            items = [_convert(v, a) for v, a in zip(value, args)]
        else:
            item_hint = args[0] if args else Any
            items = [_convert(v, item_hint) for v in value]
        if any(i is _NO for i in items):
            return _NO
        return tuple(items) if origin is tuple else list(items)
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if hint is str:
        return value if isinstance(value, str) else _NO
    if isinstance(hint, type) and issubclass(hint, tuple):  # torch.Size
        return _convert(value, tuple[int, ...])
    return _NO


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
