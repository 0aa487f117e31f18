"""Edits of a flat spec's layer list, the primitive steps of every ``fix`` strategy.

A spec from :func:`rfalint.spec.from_graph` has one layer per graph node, under the node's
name, so the strategies pick layers by graph node and edit them here by name. Layer
names are kept wherever a layer survives: the built model's module paths, and so its
``state_dict`` keys, stay those of the original model.

Inside :class:`Layers` every layer lists its inputs explicitly (``from`` is a list), so
removing a layer cannot silently reconnect its successor to the wrong value;
:meth:`Layers.to_spec` writes the short form again (``from`` only where it is not the
previous layer) and renumbers repeated calls of a module (``relu@2``) when a rewrite
removed an earlier call.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from rfalint.spec.document import INPUT


class Layers:
    """The layers of a flat spec, editable by name."""

    def __init__(self, spec: dict[str, Any]):
        self.top = {k: copy.deepcopy(v) for k, v in spec.items() if k not in ("layers", "outputs")}
        self.items: list[dict[str, Any]] = []
        prev = INPUT
        for entry in spec["layers"]:
            layer = copy.deepcopy(entry)
            source = layer.pop("from", prev)
            layer["from"] = [source] if isinstance(source, str) else list(source)
            self.items.append(layer)
            prev = layer["name"]
        self.outputs = list(spec.get("outputs", [prev]))
        # The layers that construct a module; a later call (``reuse``) may outlive them.
        self.definers = {e["name"]: e for e in self.items if "reuse" not in e}

    def __getitem__(self, name: str) -> dict[str, Any]:
        for layer in self.items:
            if layer["name"] == name:
                return layer
        raise KeyError(name)

    def names(self) -> list[str]:
        return [layer["name"] for layer in self.items]

    def bypass(self, name: str) -> None:
        """Remove a one-input layer; whatever read it reads its input instead."""
        layer = self[name]
        [source] = layer["from"]
        self.items.remove(layer)
        for other in self.items:
            other["from"] = [source if s == name else s for s in other["from"]]
        self.outputs = [source if s == name else s for s in self.outputs]

    def keep_only(self, names: set[str]) -> None:
        self.items = [layer for layer in self.items if layer["name"] in names]

    def replace(self, name: str, layer_type: str, args: dict[str, Any]) -> None:
        """Give a layer a new module (same name and inputs)."""
        layer = self[name]
        layer.pop("reuse", None)
        layer["type"] = layer_type
        layer["args"] = args
        self.definers[name] = layer

    def args(self, name: str) -> dict[str, Any]:
        """The constructor arguments of the module a layer calls (editable in place)."""
        layer = self[name]
        definer = self.definers[layer.get("reuse", name)]
        return definer.setdefault("args", {})

    def append(self, name: str, layer_type: str, source: str, args: dict[str, Any]) -> None:
        layer = {"name": name, "type": layer_type, "from": [source], "args": args}
        self.items.append(layer)
        self.definers[name] = layer
        self.outputs = [name]

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

    def to_spec(self) -> dict[str, Any]:
        """The spec dict: calls renumbered, ``from`` written only where needed."""
        calls: Counter[str] = Counter()
        rename: dict[str, str] = {}
        renumbered = []
        for layer in self.items:
            path = layer.get("reuse", layer["name"])
            calls[path] += 1
            new = path if calls[path] == 1 else f"{path}@{calls[path]}"
            rename[layer["name"]] = new
            if calls[path] == 1:  # the first surviving call constructs the module
                definer = self.definers[path]
                entry = {"name": new, "type": definer["type"]}
                if definer.get("args"):
                    entry["args"] = definer["args"]
            else:
                entry = {"name": new, "reuse": path}
            entry["from"] = layer["from"]
            renumbered.append(entry)
        layers, prev = [], INPUT
        for entry in renumbered:
            sources = [rename.get(s, s) for s in entry.pop("from")]
            out = {"name": entry["name"]}
            out.update({k: entry[k] for k in ("type", "reuse") if k in entry})
            if sources != [prev]:
                out["from"] = sources[0] if len(sources) == 1 else sources
            if "args" in entry:
                out["args"] = copy.deepcopy(entry["args"])
            layers.append(out)
            prev = out["name"]
        spec = {**copy.deepcopy(self.top), "layers": layers}
        outputs = [rename.get(s, s) for s in self.outputs]
        if outputs != [prev]:
            spec["outputs"] = outputs
        return spec
