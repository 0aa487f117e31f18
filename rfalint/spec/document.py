"""From spec data (YAML or a dict) to a flat, checked list of layers.

Everything a hand-written spec may use (blocks with parameters, ``$`` expressions,
``repeat``, unnamed entries, references to block instances) is resolved here, so the
builder and ``fix`` only ever see :class:`Document`: layers with full names, constructor
arguments already checked against the type, and inputs that are names of earlier layers.
Every error carries the YAML line of the field it is about.

Naming, like ``nn.Sequential``: an unnamed entry is named by its position in its list
(``0``, ``1``, ...); a named entry with ``repeat: n`` holds copies ``name.0`` ...
``name.{n-1}``; an unnamed one with ``repeat: n`` takes n positions. A block instance named
``layer1.0`` holds the block's layers as ``layer1.0.conv1``, ... A second call of a layer
(``reuse: relu``) is named ``relu@2``, as the capture names a module called again.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfalint.spec.errors import SpecError, Where
from rfalint.spec.limits import Limits
from rfalint.spec.types import ArgError, LayerType, lookup, suggest
from rfalint.spec.yamlio import line_of, plain

FORMAT_VERSION = 1
INPUT = "input"  # the model input (at top level) or the block input (inside a block)

_TOP_KEYS = ("rfalint_spec", "name", "input", "blocks", "layers", "outputs")
_INPUT_KEYS = ("channels", "size")
_BLOCK_KEYS = ("params", "defaults", "layers", "output")
_ENTRY_KEYS = ("name", "type", "block", "reuse", "from", "args", "repeat")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_VALUE = 1 << 62


@dataclass
class Layer:
    """One layer of the flat spec. ``reuse`` names the layer whose module this one calls
    again (then ``type`` is that layer's type and ``args`` is empty)."""

    name: str
    type: LayerType
    args: dict[str, Any]
    inputs: list[str]
    where: Where
    reuse: str | None = None


@dataclass
class Document:
    name: str
    channels: int
    size: tuple[int, ...]
    layers: list[Layer]
    outputs: list[str]
    file: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def to_data(self) -> dict[str, Any]:
        """The flat spec data (plain lists, ``from`` only where it is not the previous
        layer): what :func:`parse` reads back into this document and ``dump`` writes."""
        layers, prev = [], INPUT
        for layer in self.layers:
            entry: dict[str, Any] = {"name": layer.name}
            if layer.reuse is not None:
                entry["reuse"] = layer.reuse
            else:
                entry["type"] = layer.type.name
            if layer.inputs != [prev]:
                entry["from"] = layer.inputs[0] if len(layer.inputs) == 1 else list(layer.inputs)
            if layer.args:
                entry["args"] = plain(layer.args)  # tuples as lists, as YAML writes them
            layers.append(entry)
            prev = layer.name
        data: dict[str, Any] = {"rfalint_spec": FORMAT_VERSION, "name": self.name,
                                "input": {"channels": self.channels, "size": list(self.size)},
                                "layers": layers}
        if self.outputs != [prev]:
            data["outputs"] = list(self.outputs)
        return data


@dataclass
class _Block:
    name: str
    params: list[str]
    defaults: dict[str, Any]
    layers: list[Any]
    output: str | None
    output_where: Where


@dataclass
class _Scope:
    """Names visible inside one layer list: the top level or one block instance."""

    prefix: str  # "" or "layer1.0."
    input: str  # full name of the value entering the list
    env: dict[str, Any]  # block parameters for $ expressions
    via: str = ""
    blocks: tuple[str, ...] = ()  # blocks being expanded, to refuse recursion
    names: dict[str, str] = field(default_factory=dict)  # local name -> full value name
    instances: set[str] = field(default_factory=set)  # local names of block instances/repeats


def parse(data: Any, file: str | None = None, limits: Limits = Limits()) -> Document:
    """Check spec data and expand it into a :class:`Document` (raises :class:`SpecError`)."""
    return _Parser(file, limits).document(data)


class _Parser:
    def __init__(self, file: str | None, limits: Limits):
        self.file = file
        self.limits = limits
        self.blocks: dict[str, _Block] = {}
        self.layers: list[Layer] = []
        self.by_name: dict[str, Layer] = {}
        self.paths: dict[str, str] = {}  # full path -> "layer" | "scope"
        self.calls: Counter[str] = Counter()  # module path -> calls so far

    def where(self, container: Any = None, key: Any = None, via: str = "") -> Where:
        return Where(self.file, line_of(container, key) if container is not None else None, via)

    # ------------------------------------------------------------------ the document

    def document(self, data: Any) -> Document:
        if data is None or data == {}:
            raise SpecError("empty spec: expected 'rfalint_spec: 1', 'input' and 'layers'",
                            Where(self.file, 1 if self.file else None))
        if not isinstance(data, dict):
            raise SpecError(f"a spec is a mapping with 'rfalint_spec', 'input' and 'layers', "
                            f"got a {type(data).__name__}", self.where(data))
        self._known_keys(data, _TOP_KEYS, "top-level key", None, "")
        version = data.get("rfalint_spec")
        if "rfalint_spec" not in data:
            raise SpecError("missing 'rfalint_spec: 1' (the format version)", self.where(data))
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise SpecError(f"unsupported format version {version!r}: this rfalint reads "
                            f"rfalint_spec: {FORMAT_VERSION}", self.where(data, "rfalint_spec"))
        name = data.get("name", Path(self.file).stem if self.file else "model")
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise SpecError(f"'name' must be a string, got {name!r}", self.where(data, "name"))
        channels, size = self._input(data)
        for block_name, block in self._mapping(data, "blocks").items():
            self.blocks[str(block_name)] = self._block(str(block_name), block,
                                                       self.where(data["blocks"], block_name))
        entries = data.get("layers")
        if entries is None:
            raise SpecError("missing 'layers' (the list of layers)", self.where(data))
        if not isinstance(entries, list) or not entries:
            raise SpecError("empty spec: 'layers' lists no layers", self.where(data, "layers"))
        scope = _Scope("", INPUT, {})
        self._expand(entries, scope)
        if not self.layers:
            raise SpecError("empty spec: the layers expand to nothing (repeat: 0?)",
                            self.where(data, "layers"))
        outputs = self._outputs(data, scope)
        return Document(str(name), channels, size, self.layers, outputs, self.file)

    def _known_keys(self, mapping: dict, allowed: tuple[str, ...], what: str,
                    layer: str | None, via: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise SpecError(f"unknown {what} '{key}'{suggest(str(key), allowed)}",
                                self.where(mapping, key, via), layer)

    def _mapping(self, data: dict, key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise SpecError(f"'{key}' must be a mapping", self.where(data, key))
        return value

    def _input(self, data: dict) -> tuple[int, tuple[int, ...]]:
        spec = data.get("input")
        if not isinstance(spec, dict):
            raise SpecError("missing 'input: {channels: C, size: [H, W]}' (the size the spec "
                            "is checked at)", self.where(data, "input" if spec is not None else None))
        self._known_keys(spec, _INPUT_KEYS, "input field", None, "")
        channels, size = spec.get("channels"), spec.get("size")
        if not _positive_int(channels):
            raise SpecError(f"input 'channels' must be a positive integer, got {channels!r}",
                            self.where(spec, "channels" if "channels" in spec else None))
        if not (isinstance(size, list) and 1 <= len(size) <= 3 and all(map(_positive_int, size))):
            raise SpecError("input 'size' must list 1 to 3 positive integers (the spatial "
                            f"size, e.g. [32, 32]), got {size!r}",
                            self.where(spec, "size" if "size" in spec else None))
        return channels, tuple(size)

    def _block(self, name: str, block: Any, where: Where) -> _Block:
        if not _IDENT.match(name):
            raise SpecError(f"block name '{name}' must be an identifier", where)
        if not isinstance(block, dict):
            raise SpecError(f"block '{name}' must be a mapping with 'params' and 'layers'", where)
        self._known_keys(block, _BLOCK_KEYS, f"field of block '{name}'", None, "")
        params = block.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) and _IDENT.match(p)
                                                   for p in params):
            raise SpecError(f"block '{name}': 'params' must list parameter names",
                            self.where(block, "params"))
        defaults = block.get("defaults", {})
        if not isinstance(defaults, dict) or not all(isinstance(p, str) and _IDENT.match(p)
                                                     for p in defaults):
            raise SpecError(f"block '{name}': 'defaults' must map parameter names to values",
                            self.where(block, "defaults"))
        both = [p for p in params if p in defaults]
        if both:
            raise SpecError(f"block '{name}': parameter '{both[0]}' is in 'params' (required) "
                            "and in 'defaults' (optional)", self.where(block, "defaults"))
        layers = block.get("layers")
        if not isinstance(layers, list) or not layers:
            raise SpecError(f"block '{name}' has no 'layers'", self.where(block, "layers")
                            if "layers" in block else where)
        output = block.get("output")
        if output is not None and not isinstance(output, (str, int)):
            raise SpecError(f"block '{name}': 'output' must be a layer name",
                            self.where(block, "output"))
        return _Block(name, list(params), defaults, layers,
                      None if output is None else str(output), self.where(block, "output"))

    def _outputs(self, data: dict, scope: _Scope) -> list[str]:
        if "outputs" not in data:
            return [self.layers[-1].name]
        refs = data["outputs"]
        refs = refs if isinstance(refs, list) else [refs]
        if not refs:
            raise SpecError("'outputs' lists no layers", self.where(data, "outputs"))
        out = []
        for i, ref in enumerate(refs):
            at = self.where(data["outputs"], i) if isinstance(data["outputs"], list) \
                else self.where(data, "outputs")
            out.append(self._resolve(ref, scope, {}, at, None, "outputs"))
        return out

    # ------------------------------------------------------------------ layer lists

    def _expand(self, entries: list, scope: _Scope) -> str:
        """Expand one layer list into ``self.layers``; returns the name of its last value."""
        declared = {}
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and isinstance(entry.get("name"), (str, int)):
                declared.setdefault(str(entry["name"]), line_of(entries, i))
        prev = scope.input
        index = 0
        for i, entry in enumerate(entries):
            at = self.where(entries, i, scope.via)
            if not isinstance(entry, dict):
                raise SpecError(f"a layer entry is a mapping like {{name: conv1, type: Conv2d, "
                                f"args: {{...}}}}, got {entry!r}", at)
            local = entry.get("name")
            if local is not None and (not isinstance(local, (str, int)) or isinstance(local, bool)):
                raise SpecError(f"'name' must be a string, got {local!r}",
                                self.where(entry, "name", scope.via))
            kinds = [k for k in ("type", "block", "reuse") if k in entry]
            # The layer as messages name it: its full name (the first copy's when unnamed).
            if local is not None:
                label = scope.prefix + str(local)
            else:
                label = None if "reuse" in kinds else scope.prefix + str(index)
            self._known_keys(entry, _ENTRY_KEYS, "field", label, scope.via)
            if len(kinds) != 1:
                what = "needs one of 'type', 'block' or 'reuse'" if not kinds else \
                    f"has both '{kinds[0]}' and '{kinds[1]}'"
                raise SpecError(what, at, label)
            repeat = self._repeat(entry, scope, label)
            sources = self._sources(entry, scope, declared, prev, at, label)
            if kinds[0] == "reuse":
                prev = self._reuse(entry, scope, sources, repeat, at)
                continue
            if local is None:
                names = [str(index + k) for k in range(repeat if "repeat" in entry else 1)]
                index += len(names)
                container = None
            else:
                local = str(local)
                self._check_name(local, self.where(entry, "name", scope.via))
                names = [f"{local}.{k}" for k in range(repeat)] if "repeat" in entry else [local]
                container = local if "repeat" in entry else None
                index += 1
            for k, name in enumerate(names):
                inputs = sources if k == 0 else [prev]
                if kinds[0] == "type":
                    prev = self._layer(entry, scope, name, inputs, at)
                else:
                    prev = self._instance(entry, scope, name, inputs, at)
                    scope.instances.add(name)
                scope.names[name] = prev
            if container is not None:
                scope.names[container] = prev
                scope.instances.add(container)
        return prev

    def _repeat(self, entry: dict, scope: _Scope, label: str | None) -> int:
        if "repeat" not in entry:
            return 1
        at = self.where(entry, "repeat", scope.via)
        value = self._evaluate(entry["repeat"], scope, at, label)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SpecError(f"'repeat' must be a count (0 or more), got {value!r}", at, label)
        if value > self.limits.max_repeat:
            raise SpecError(f"repeat {value} is over the limit of {self.limits.max_repeat}",
                            at, label)
        return value

    def _sources(self, entry: dict, scope: _Scope, declared: dict[str, int], prev: str,
                 at: Where, label: str | None) -> list[str]:
        if "from" not in entry:
            return [prev]
        refs = entry["from"]
        where_list = refs if isinstance(refs, list) else None
        refs = refs if isinstance(refs, list) else [refs]
        if not refs:
            raise SpecError("'from' lists no inputs", self.where(entry, "from", scope.via), label)
        out = []
        for i, ref in enumerate(refs):
            here = self.where(where_list, i, scope.via) if where_list is not None \
                else self.where(entry, "from", scope.via)
            out.append(self._resolve(ref, scope, declared, here, label, "from"))
        return out

    def _resolve(self, ref: Any, scope: _Scope, declared: dict[str, int], at: Where,
                 label: str | None, field_name: str) -> str:
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise SpecError(f"'{field_name}' must name layers, got {ref!r}", at, label)
        ref = str(ref)
        if ref == INPUT:
            return scope.input
        if ref in scope.names:
            return scope.names[ref]
        if label is not None and scope.prefix + ref == label:
            raise SpecError(f"'{field_name}' reads the layer itself (a cycle)", at, label)
        if ref in declared:
            raise SpecError(f"'{field_name}' refers to '{ref}', which is defined later (line "
                            f"{declared[ref]}): a layer reads only layers above it, so a spec "
                            "has no cycles", at, label)
        hint = suggest(ref, [*scope.names, INPUT])
        raise SpecError(f"'{field_name}' refers to unknown layer '{ref}'{hint}", at, label)

    def _check_name(self, local: str, at: Where) -> None:
        if local == INPUT:
            raise SpecError("'input' names the model or block input; pick another layer name", at)
        for part in local.split("."):
            if not _PART.match(part):
                why = " ('@' is kept for second calls: write {reuse: NAME})" if "@" in part else ""
                raise SpecError(f"bad layer name '{local}': each dotted part needs letters, "
                                f"digits, '_' or '-'{why}", at)
            if part in _reserved():
                raise SpecError(f"bad layer name '{local}': '{part}' is an nn.Module attribute",
                                at)

    def _register(self, name: str, at: Where, kind: str = "layer") -> None:
        """Claim a module path; a path is either one layer or a scope holding layers."""
        if name in self.paths:
            first = self.by_name.get(name)
            line = f" (line {first.where.line})" if first and first.where.line else ""
            what = "another layer" if self.paths[name] == "layer" else "a block or repeat"
            raise SpecError(f"name '{name}' is already used by {what}{line}", at, name)
        parts = name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if self.paths.get(prefix) == "layer":
                raise SpecError(f"'{prefix}' is a layer, so it cannot hold '{name}'", at, name)
            self.paths[prefix] = "scope"
        self.paths[name] = kind

    def _add(self, layer: Layer) -> str:
        if len(self.layers) >= self.limits.max_layers:
            raise SpecError(f"more than {self.limits.max_layers} layers after expanding blocks "
                            "and repeats", layer.where, layer.name)
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        return layer.name

    # ------------------------------------------------------------------ entries

    def _layer(self, entry: dict, scope: _Scope, name: str, inputs: list[str], at: Where) -> str:
        full = scope.prefix + name
        try:
            layer_type = lookup(entry["type"])
        except ArgError as exc:
            raise SpecError(str(exc), self.where(entry, "type", scope.via), full) from None
        raw = self._evaluate(entry.get("args"), scope, self.where(entry, "args", scope.via), full)
        try:
            args = layer_type.bind(raw)
        except ArgError as exc:
            args_node = entry.get("args")
            key = exc.arg if isinstance(args_node, dict) and exc.arg in args_node else None
            line_at = self.where(args_node, key, scope.via) if key is not None \
                else self.where(entry, "args" if "args" in entry else "type", scope.via)
            raise SpecError(str(exc), line_at, full) from None
        self._arity(layer_type, inputs, entry, scope, full)
        self._register(full, at)
        self.calls[full] += 1
        return self._add(Layer(full, layer_type, args, inputs, at))

    def _arity(self, layer_type: LayerType, inputs: list[str], entry: dict, scope: _Scope,
               full: str) -> None:
        if layer_type.arity is not None and len(inputs) != layer_type.arity:
            n = layer_type.arity
            raise SpecError(f"{layer_type.name} takes {n} input{'s' if n > 1 else ''}, 'from' "
                            f"gives {len(inputs)}",
                            self.where(entry, "from" if "from" in entry else "type", scope.via),
                            full)

    def _reuse(self, entry: dict, scope: _Scope, inputs: list[str], repeat: int,
               at: Where) -> str:
        """Call an earlier layer's module again (shared weights): ``relu@2``, ``relu@3``."""
        target_ref = entry["reuse"]
        label = None if entry.get("name") is None else scope.prefix + str(entry["name"])
        if "args" in entry:
            raise SpecError("a reused layer takes no 'args' (it is the same module)",
                            self.where(entry, "args", scope.via), label)
        here = self.where(entry, "reuse", scope.via)
        if not isinstance(target_ref, (str, int)) or isinstance(target_ref, bool):
            raise SpecError(f"'reuse' must name a layer, got {target_ref!r}", here, label)
        if str(target_ref) in scope.instances:
            raise SpecError(f"'reuse' names a single layer, and '{target_ref}' is a block or "
                            "repeat", here, label)
        full_target = self._resolve(target_ref, scope, {}, here, label, "reuse")
        if full_target == scope.input:
            raise SpecError("'reuse' names a layer, not the input", here, label)
        target = self.by_name[full_target]
        module = target.reuse or target.name
        if "name" in entry and repeat != 1:
            raise SpecError("a repeated reuse is named by its calls; drop 'name'", at, label)
        prev = inputs[0]
        for k in range(repeat):
            call_inputs = inputs if k == 0 else [prev]
            self.calls[module] += 1
            full = f"{module}@{self.calls[module]}"
            if label is not None and label != full:
                raise SpecError(f"call {self.calls[module]} of '{module}' is named '{full}' (as "
                                f"the capture names it), not '{label}'; drop 'name'",
                                self.where(entry, "name", scope.via), label)
            self._arity(target.type, call_inputs, entry, scope, full)
            self._register(full, at)
            prev = self._add(Layer(full, target.type, {}, call_inputs, at, module))
            scope.names[full[len(scope.prefix):]] = prev
        return prev

    def _instance(self, entry: dict, scope: _Scope, name: str, inputs: list[str],
                  at: Where) -> str:
        full = scope.prefix + name
        block_name = entry["block"]
        here = self.where(entry, "block", scope.via)
        if not isinstance(block_name, str) or block_name not in self.blocks:
            hint = suggest(str(block_name), self.blocks)
            raise SpecError(f"unknown block '{block_name}'{hint}", here, full)
        block = self.blocks[block_name]
        if block_name in scope.blocks:
            chain = " -> ".join((*scope.blocks, block_name))
            raise SpecError(f"block '{block_name}' uses itself ({chain})", here, full)
        if len(scope.blocks) >= self.limits.max_block_depth:
            raise SpecError(f"blocks nest deeper than {self.limits.max_block_depth}", here, full)
        if len(inputs) != 1:
            raise SpecError(f"a block takes one input, 'from' gives {len(inputs)}",
                            self.where(entry, "from", scope.via), full)
        env = self._block_args(entry, block, scope, full)
        via = f"in block '{block_name}' used at line {at.line}" if at.line is not None \
            else f"in block '{block_name}' used by '{full}'"
        if scope.via:
            via = f"{via}, {scope.via}"
        inner = _Scope(full + ".", inputs[0], env, via, (*scope.blocks, block_name))
        self._register(full, at, "scope")
        last = self._expand(block.layers, inner)
        if block.output is not None:
            last = self._resolve(block.output, inner, {}, block.output_where, None, "output")
        if last == inputs[0]:
            raise SpecError(f"block '{block_name}' expands to no layers", here, full)
        for local, value in inner.names.items():
            scope.names[f"{name}.{local}"] = value
        return last

    def _block_args(self, entry: dict, block: _Block, scope: _Scope, full: str) -> dict:
        args = entry.get("args", {})
        if not isinstance(args, dict):
            raise SpecError("block args must be a mapping of parameters",
                            self.where(entry, "args", scope.via), full)
        allowed = [*block.params, *block.defaults]
        for key in args:
            if key not in allowed:
                raise SpecError(f"block '{block.name}' has no parameter '{key}'"
                                f"{suggest(str(key), allowed)} (it takes: "
                                f"{', '.join(allowed) or 'none'})",
                                self.where(args, key, scope.via), full)
        missing = [p for p in block.params if p not in args]
        if missing:
            raise SpecError(f"block '{block.name}' needs parameter"
                            f"{'s' if len(missing) > 1 else ''} "
                            + ", ".join(f"'{m}'" for m in missing),
                            self.where(entry, "args" if "args" in entry else "block", scope.via),
                            full)
        env = {k: self._evaluate(v, _Scope("", "", {}), self.where(block.defaults, k), full)
               for k, v in block.defaults.items()}
        for key, value in args.items():
            env[key] = self._evaluate(value, scope, self.where(args, key, scope.via), full)
        return env

    # ------------------------------------------------------------------ $ expressions

    def _evaluate(self, value: Any, scope: _Scope, at: Where, label: str | None) -> Any:
        """Replace ``$expr`` strings by their value (block parameters and arithmetic)."""
        if isinstance(value, dict):
            return {k: self._evaluate(v, scope, self.where(value, k, scope.via), label)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._evaluate(v, scope, self.where(value, i, scope.via), label)
                    for i, v in enumerate(value)]
        if isinstance(value, str) and value.startswith("$"):
            try:
                return _Expression(value[1:], scope.env).value()
            except ArgError as exc:
                raise SpecError(f"in '{value}': {exc}", at, label) from None
        return value


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.Mod: operator.mod}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class _Expression:
    """A tiny evaluator: parameter names, numbers, + - * / // % and parentheses."""

    def __init__(self, text: str, env: dict[str, Any]):
        self.text = text
        self.env = env

    def value(self) -> Any:
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError:
            raise ArgError("not an expression (write $name or $(name - 1) // 2)") from None
        return self._eval(tree.body)

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                where = "; parameters exist only inside blocks" if not self.env else ""
                raise ArgError(f"unknown parameter '{node.id}'"
                               f"{suggest(node.id, self.env)}{where}")
            return self.env[node.id]
        if isinstance(node, ast.Constant) and _number(node.value):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._check(_UNARY[type(node.op)](self._number(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._number(node.left), self._number(node.right)
            if isinstance(node.op, (ast.FloorDiv, ast.Div, ast.Mod)) and right == 0:
                raise ArgError("division by zero")
            return self._check(_BINARY[type(node.op)](left, right))
        raise ArgError(f"'{ast.unparse(node)}' is not allowed (only names, numbers, "
                       "+ - * / // % and parentheses)")

    def _number(self, node: ast.AST) -> int | float:
        value = self._eval(node)
        if not _number(value):
            raise ArgError(f"'{ast.unparse(node)}' is {value!r}, not a number")
        return value

    @staticmethod
    def _check(value: int | float) -> int | float:
        if abs(value) > _MAX_VALUE:
            raise ArgError("value too large")
        return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@functools.cache
def _reserved() -> frozenset[str]:
    """Attribute names of the built model and its scopes, which layer names cannot take."""
    from rfalint.spec.build import SpecModel  # build imports this module

    return frozenset(dir(SpecModel("", [], [])))
