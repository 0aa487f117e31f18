"""Typed edits of a flat spec, the primitive steps of every ``fix`` strategy.

A spec from :func:`rfalint.spec.from_graph` has one layer per graph node, under the node's
name, so the strategies pick layers by graph node and edit the parsed
:class:`~rfalint.spec.Document` here by name. Every edit works on
:class:`~rfalint.spec.Layer` objects: a new or replaced layer's type is looked up in the
spec's allowlist and its arguments are checked (``LayerType.bind``) when it is made, not
when the result is built. Layer names are kept wherever a layer survives: the built
model's module paths, and so its ``state_dict`` keys, stay those of the original model.

:meth:`Rewriter.document` renumbers repeated calls of a module (``relu@2``) when a rewrite
removed an earlier call, and makes the first surviving call construct the module.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from rfalint.spec import Document, Layer
from rfalint.spec.errors import Where
from rfalint.spec.types import lookup


class Rewriter:
    """The layers of a flat :class:`Document`, editable by name."""

    def __init__(self, doc: Document):
        self.base = doc
        self.layers = [dataclasses.replace(layer, args=dict(layer.args), inputs=list(layer.inputs))
                       for layer in doc.layers]
        self.outputs = list(doc.outputs)
        # The layers that construct a module; a later call (``reuse``) may outlive them.
        self.definers = {layer.name: layer for layer in self.layers if layer.reuse is None}

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def bypass(self, name: str) -> None:
        """Remove a one-input layer; whatever read it reads its input instead."""
        layer = self[name]
        [source] = layer.inputs
        self.layers.remove(layer)
        for other in self.layers:
            other.inputs = [source if s == name else s for s in other.inputs]
        self.outputs = [source if s == name else s for s in self.outputs]

    def keep_only(self, names: set[str]) -> None:
        self.layers = [layer for layer in self.layers if layer.name in names]

    def replace(self, name: str, layer_type: str, args: dict[str, Any]) -> None:
        """Give a layer a new module (same name and inputs)."""
        old = self[name]
        new = _layer(name, layer_type, args, old.inputs)
        self.layers[self.layers.index(old)] = new
        self.definers[name] = new

    def args(self, name: str) -> dict[str, Any]:
        """The constructor arguments of the module a layer calls (editable in place)."""
        layer = self[name]
        return self.definers[layer.reuse or name].args

    def append(self, name: str, layer_type: str, source: str, args: dict[str, Any]) -> None:
        layer = _layer(name, layer_type, args, [source])
        self.layers.append(layer)
        self.definers[name] = layer
        self.outputs = [name]

    def insert(self, index: int, name: str, layer_type: str, inputs: list[str],
               args: dict[str, Any]) -> Layer:
        """A new layer at ``index`` of the layer list (its readers are rewired by the caller)."""
        layer = _layer(name, layer_type, args, inputs)
        self.layers.insert(index, layer)
        self.definers[name] = layer
        return layer

    def free_name(self, wanted: str) -> str:
        """``wanted``, or ``wanted_2``...: a name that is neither a layer nor a scope."""
        taken = set()
        for name in self.names():
            parts = name.split("@")[0].split(".")
            taken.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        candidate, n = wanted, 1
        while candidate in taken:
            n += 1
            candidate = f"{wanted}_{n}"
        return candidate

    def document(self) -> Document:
        """The edited document: calls renumbered, the first surviving call constructing."""
        calls: Counter[str] = Counter()
        rename: dict[str, str] = {}
        layers = []
        for layer in self.layers:
            path = layer.reuse or layer.name
            calls[path] += 1
            name = path if calls[path] == 1 else f"{path}@{calls[path]}"
            rename[layer.name] = name
            if calls[path] == 1:
                definer = self.definers[path]
                layers.append(Layer(name, definer.type, dict(definer.args), layer.inputs,
                                    layer.where))
            else:
                layers.append(Layer(name, layer.type, {}, layer.inputs, layer.where, path))
        for layer in layers:
            layer.inputs = [rename.get(s, s) for s in layer.inputs]
        outputs = [rename.get(s, s) for s in self.outputs]
        return dataclasses.replace(self.base, layers=layers, outputs=outputs)


def _layer(name: str, layer_type: str, args: dict[str, Any], inputs: list[str]) -> Layer:
    kind = lookup(layer_type)
    return Layer(name, kind, kind.bind(args), list(inputs), Where())

