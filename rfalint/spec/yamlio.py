"""Reading spec YAML safely, with the line of every value; writing it one layer per line.

Reading uses a subclass of ``yaml.SafeLoader`` that only adds line numbers: mappings and
sequences come back as :class:`LMap`/:class:`LSeq` (a ``dict``/``list`` that remembers
where it and each of its items start). The constructor table is SafeLoader's, so a
``!!python/object`` tag fails exactly as under ``yaml.safe_load``. Aliases are counted as
often as they are used, so an alias bomb is refused before anything walks it.
"""

from __future__ import annotations

from typing import Any

import yaml

from rfalint.errors import first_line
from rfalint.spec.errors import SpecError, Where
from rfalint.spec.limits import Limits


class LMap(dict):
    """A YAML mapping that knows its line and the line of each key."""

    line: int | None = None
    lines: dict[Any, int]


class LSeq(list):
    """A YAML sequence that knows its line and the line of each item."""

    line: int | None = None
    lines: list[int]


def line_of(container: Any, key: Any = None) -> int | None:
    """Line of ``container[key]`` (or of the container) when it came from YAML."""
    if key is not None:
        if isinstance(container, LMap) and key in container.lines:
            return container.lines[key]
        if isinstance(container, LSeq) and isinstance(key, int) and key < len(container.lines):
            return container.lines[key]
    return getattr(container, "line", None)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LMap:
    loader.flatten_mapping(node)  # merge keys (<<: *defaults)
    out = LMap()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise SpecError(f"keys must be names, got {key!r}", Where(loader.name, line))
        if key in out:
            raise SpecError(f"duplicate key '{key}' (first at line {out.lines[key]})",
                            Where(loader.name, line))
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LSeq:
    out = LSeq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


def _not_data(loader: _Loader, node: yaml.Node):
    """SafeLoader's non-JSON types (bytes, dates, sets) are not spec values either."""
    raise SpecError(f"YAML tag {_short_tag(node.tag)} is not allowed: a spec holds plain data "
                    "only (quote dates)", Where(loader.name, node.start_mark.line + 1))


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _sequence)
for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_data)


def _count(node: yaml.Node, limit: int, file: str) -> int:
    """Values in the document with aliases expanded, stopping as soon as ``limit`` is hit."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once here; the constructor refuses it
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        if total > limit:
            raise SpecError(f"the document has more than {limit} values once its aliases are "
                            "expanded", Where(file, n.start_mark.line + 1))
        sizes[id(n)] = total
        return total

    return size(node)


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def load_yaml(text: str, file: str, limits: Limits) -> Any:
    """Parse one YAML document into plain data with line numbers; errors are SpecErrors."""
    if len(text.encode("utf-8")) > limits.max_bytes:
        raise SpecError(f"spec is larger than {limits.max_bytes} bytes", Where(file))
    loader = _Loader(text)
    loader.name = file
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count(node, limits.max_nodes, file)
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        tag = getattr(exc, "problem", "") or ""
        if "could not determine a constructor" in tag:
            tag = tag.split("tag ")[-1].strip("'")
            problem = f"YAML tag {_short_tag(tag)} is not allowed: a spec holds plain data only"
        else:
            problem = f"malformed YAML: {exc.problem}"
        raise SpecError(problem, Where(file, mark.line + 1 if mark else None)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        raise SpecError(f"malformed YAML: {problem}",
                        Where(file, mark.line + 1 if mark else None)) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {first_line(exc)}", Where(file)) from None
    except RecursionError:
        raise SpecError("the YAML document nests too deeply", Where(file)) from None
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------- writing

_TOP_KEYS = ("rfalint_spec", "name", "input", "blocks", "layers", "outputs")


def plain(value: Any) -> Any:
    """Tuples to lists and dict subclasses to dicts, so safe_dump writes plain YAML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _flow(value: Any) -> str:
    """One-line YAML for a value (a scalar is dumped inside a list: no document end mark)."""
    text = yaml.safe_dump([plain(value)], default_flow_style=True, sort_keys=False,
                          width=1 << 30).strip()
    return text[1:-1]


def _layer_lines(layers: list[dict[str, Any]], indent: str) -> list[str]:
    """One flow mapping per layer, and a blank line between blocks (``layer1.0``,
    ``layer1.1``: the name's scope, at most two levels deep)."""
    out: list[str] = []
    group = None
    for layer in layers:
        scope = str(layer.get("name", "")).split(".")[:-1][:2]
        if out and scope != group:
            out.append("")
        group = scope
        out.append(f"{indent}- {_flow(layer)}")
    return out


def dump_yaml(spec: dict[str, Any], header: str = "") -> str:
    """Spec text: top-level keys in a fixed order, one layer per line (easy to diff)."""
    extra = [k for k in spec if k not in _TOP_KEYS]
    if extra:
        raise SpecError(f"unknown top-level key '{extra[0]}'")
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key in _TOP_KEYS:
        if key not in spec:
            continue
        value = spec[key]
        if key == "layers":
            lines.append("layers:")
            lines.extend(_layer_lines(value, "  "))
        elif key == "blocks":
            lines.append("blocks:")
            for block_name, block in value.items():
                lines.append(f"  {_flow(block_name)}:")
                for field, item in block.items():
                    if field == "layers":
                        lines.append("    layers:")
                        lines.extend(_layer_lines(item, "      "))
                    else:
                        lines.append(f"    {field}: {_flow(item)}")
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"
