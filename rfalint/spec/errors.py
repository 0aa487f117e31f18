"""Spec errors: one line that points at the file, the YAML line and the layer."""

from __future__ import annotations

from dataclasses import dataclass

from rfalint.errors import LoadError, ModelError


@dataclass(frozen=True)
class Where:
    """A place in a spec: file (None for a spec built from a dict) and 1-based line.

    ``via`` says how a layer written inside a block got there (``in block 'basic' used at
    line 40``), since the same block line stands for every use of the block.
    """

    file: str | None = None
    line: int | None = None
    via: str = ""

    def prefix(self) -> str:
        if self.file is None:
            return f"line {self.line}: " if self.line is not None else ""
        return f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "


class SpecError(LoadError):
    """A spec that cannot be read, expanded or built: ``file:line: layer 'x': what``."""

    def __init__(self, message: str, where: Where | None = None, layer: str | None = None):
        self.where = where or Where()
        self.layer = layer
        self.message = message
        located = f"layer '{layer}': {message}" if layer else message
        via = f" ({self.where.via})" if self.where.via else ""
        super().__init__(f"{self.where.prefix()}{located}{via}")


class ExportError(ModelError):
    """A captured model that the spec format cannot express; says what and where."""
