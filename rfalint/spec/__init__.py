"""YAML architecture specs: write a model by hand, or export a captured one, and build it.

The format is documented in ``docs/spec.md``. The pipeline:

* read: :func:`load` / :func:`loads` parse YAML safely, keeping line numbers;
* expand: :func:`parse` checks the data and expands blocks and repeats into a flat
  :class:`Document` (one :class:`Layer` per module call, arguments checked);
* build: :func:`build` gives an ordinary ``nn.Module`` whose module names are the layer
  names, after checking sizes and shapes on ``meta`` tensors;
* export: :func:`from_graph` turns a captured graph into a spec dict, :func:`export`
  does that for a model and verifies the round trip, :func:`dump` writes YAML text.

Example::

    >>> import rfalint.spec as spec
    >>> model = spec.build({"rfalint_spec": 1, "input": {"channels": 3, "size": [32, 32]},
    ...                     "layers": [{"name": "conv", "type": "Conv2d",
    ...                                 "args": {"in_channels": 3, "out_channels": 8,
    ...                                          "kernel_size": 3}},
    ...                                {"name": "relu", "type": "relu"}]})
    >>> [name for name, _ in model.named_modules()][1:]
    ['conv', 'relu']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from rfalint.spec.build import SpecModel, build_document
from rfalint.spec.document import FORMAT_VERSION, Document, Layer, parse
from rfalint.spec.errors import ExportError, SpecError, Where
from rfalint.spec.export import export, from_graph
from rfalint.spec.limits import Limits
from rfalint.spec.yamlio import dump_yaml, load_yaml

__all__ = ["FORMAT_VERSION", "Document", "ExportError", "Layer", "Limits", "SpecError",
           "SpecModel", "build", "dump", "export", "export_yaml", "from_graph", "load", "loads",
           "name_for", "parse", "read"]


def read(path: str | Path, limits: Limits = Limits()) -> Any:
    """The data of a spec file (dicts and lists that remember their YAML lines)."""
    file = str(path)
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", Where(file)) from None
    if size > limits.max_bytes:
        raise SpecError(f"spec is larger than {limits.max_bytes} bytes", Where(file))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file", Where(file)) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", Where(file)) from None
    return load_yaml(text, file, limits)


def build(spec: dict[str, Any] | Document, limits: Limits = Limits()) -> SpecModel:
    """Build a spec given as a dict (as :func:`from_graph` returns it) or a Document."""
    doc = spec if isinstance(spec, Document) else parse(spec, None, limits)
    return build_document(doc, limits)


def loads(text: str, file: str = "<spec>", limits: Limits = Limits()) -> SpecModel:
    """Build a spec from YAML text; ``file`` names it in error messages."""
    return build_document(parse(load_yaml(text, file, limits), file, limits), limits)


def load(path: str | Path, limits: Limits = Limits()) -> SpecModel:
    """Build the spec in a YAML file: an ``nn.Module`` named after the spec's layers."""
    return build_document(parse(read(path, limits), str(path), limits), limits)


def dump(spec: dict[str, Any], header: str = "") -> str:
    """YAML text of a spec dict, one layer per line; ``header`` becomes a comment."""
    return dump_yaml(spec, header)


def name_for(target: str) -> str:
    """A spec name for a MODEL target: ``file.py:resnet18``, ``file.py``, ``pkg.mod:Net``."""
    from rfalint.load import Target

    return Target.parse(target).stem


def export_yaml(model: nn.Module, input_shape: tuple[int, ...], name: str = "model",
                origin: str = "") -> str:
    """The verified spec of ``model`` (see :func:`export`) as YAML text with a header."""
    from rfalint import __version__

    spec = export(model, input_shape, name)
    source = f" from {origin}" if origin else ""
    shape = "x".join(str(s) for s in input_shape)
    return dump(spec, header=f"exported by rfalint {__version__}{source} at input {shape}")
