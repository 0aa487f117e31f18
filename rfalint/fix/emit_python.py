"""A spec as a standalone, readable ``nn.Module`` source file (``fix --emit python``).

The file needs only torch. ``__init__`` constructs every module under its spec name, in
``nn.ModuleList`` (children ``0..n-1``) and ``nn.ModuleDict`` containers for dotted names
(``layer1.0.conv1`` is ``self.layer1[0]['conv1']``), so ``state_dict`` keys are the
spec's and weights saved by ``fix --save-weights`` load into it. ``forward`` is
straight-line code over the layer list; functional ops are written as the torch calls
they stand for (each op record's Python form, rfalint.ops), so no rfalint module is
needed at run time.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

import torch
import torch.nn.functional as F

from rfalint.spec import Document, parse
from rfalint.spec.document import INPUT
from rfalint.ops import DEFAULT
from rfalint.ops import python as py
from rfalint.ops.records import Writer

_RESERVED = {"x", "self", "torch", "nn", "F"}


def _writer(op: str) -> Writer:
    """How to write ``op`` as Python: its record's writer, else its torch function."""
    record = DEFAULT.op(op)
    if record.python is not None:
        return record.python
    fn = record.spec.fn
    for prefix, namespace in (("F", F), ("torch", torch)):
        if getattr(namespace, fn.__name__, None) is fn:
            return py.call(prefix, fn.__name__)
    raise KeyError(f"no Python form for op '{op}'")


def _class_name(name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words if w)
    return text if text[:1].isalpha() else f"Model{text}"


class _Scope:
    """A dotted prefix of layer names (``layer1``, ``layer1.0``) and what it holds, in order
    of first appearance; written as an ``nn.ModuleList`` (children 0..n-1) or else an
    ``nn.ModuleDict``, so ``state_dict`` keys are the layer names."""

    def __init__(self) -> None:
        self.children: dict[str, _Scope | str] = {}  # part -> scope, or a leaf constructor

    def add(self, parts: list[str], constructor: str) -> None:
        if len(parts) == 1:
            self.children[parts[0]] = constructor
            return
        child = self.children.setdefault(parts[0], _Scope())
        child.add(parts[1:], constructor)

    @property
    def is_list(self) -> bool:
        return list(self.children) == [str(i) for i in range(len(self.children))]

    def key(self, part: str) -> str:
        return f"[{part}]" if self.is_list else f"[{part!r}]"

    def write(self, indent: str) -> list[str]:
        """The container's constructor, one child per line."""
        inner = indent + "    "
        items = []
        for part, child in self.children.items():
            value = child if isinstance(child, str) else None
            lines = [value] if value is not None else child.write(inner)
            prefix = "" if self.is_list else f"{part!r}: "
            lines = [prefix + lines[0], *lines[1:]]
            lines[-1] += ","
            items += [inner + lines[0], *lines[1:]]
        if self.is_list:
            return ["nn.ModuleList([", *items, indent + "])"]
        return ["nn.ModuleDict({", *items, indent + "})"]


def _attribute(part: str) -> bool:
    return part.isidentifier() and not keyword.iskeyword(part)


def _access(top: _Scope, path: str) -> str:
    """``self.layer1[0]['conv1']``: how forward reaches the module at ``path``."""
    first, *rest = path.split(".")
    text = f"self.{first}" if _attribute(first) else f"getattr(self, {first!r})"
    scope = top.children[first]
    for part in rest:
        text += scope.key(part)
        scope = scope.children[part]
    return text


def emit_python(spec: dict[str, Any] | Document, header: str = "") -> str:
    """Python source of a module that builds ``spec``'s architecture (no rfalint import)."""
    doc = spec if isinstance(spec, Document) else parse(spec)
    cls = _class_name(doc.name)
    top = _Scope()
    for layer in doc.layers:
        if layer.reuse is None and not layer.type.is_op:
            top.add(layer.name.split("."), f"nn.{layer.type.name}({py.kwargs_text(layer.args)})")
    init: list[str] = []
    for part, child in top.children.items():
        lines = [child] if isinstance(child, str) else child.write("")
        target = f"self.{part} = " if _attribute(part) else f"self.add_module({part!r}, "
        close = "" if _attribute(part) else ")"
        init += [target + lines[0], *lines[1:]]
        init[-1] += close
    names = _variables(doc)
    definers = {layer.name: layer for layer in doc.layers}
    forward: list[str] = []
    for layer in doc.layers:
        xs = [names[s] for s in layer.inputs]
        module = definers[layer.reuse] if layer.reuse is not None else layer
        if module.type.is_op:
            expr = _writer(module.type.name)(xs, module.args)
        else:
            expr = f"{_access(top, module.name)}({', '.join(xs)})"
        forward.append(f"{names[layer.name]} = {expr}")
    outputs = ", ".join(names[o] for o in doc.outputs)
    shape = tuple(doc.input_shape)
    lines = [
        f'"""{doc.name}: {header}' if header else f'"""{doc.name}',
        "",
        "Standalone: needs only torch. Module names follow the spec, so state dicts saved by",
        "`rfalint fix --save-weights` load with `model.load_state_dict(torch.load(path))`.",
        '"""',
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "",
        f"INPUT_SHAPE = {shape!r}  # (channels, *spatial) the architecture was checked at",
        "",
        "",
        f"class {cls}(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        *(f"        {line}" for line in init),
        "",
        "    def forward(self, x):",
        *(f"        {line}" for line in forward),
        f"        return {outputs}",
        "",
        "",
        "def build():",
        f"    return {cls}()",
        "",
    ]
    return "\n".join(lines)


def _variables(doc: Document) -> dict[str, str]:
    names = {INPUT: "x"}
    used = set(_RESERVED)
    for layer in doc.layers:
        base = re.sub(r"\W", "_", layer.name)
        if not base.isidentifier() or keyword.iskeyword(base):
            base = f"x_{base}"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        names[layer.name] = candidate
    return names
