"""Map a finding's layer back to the line of user code that defines it (SARIF, github).

A layer ``layer3.1.conv1`` is an ``nn.Conv2d`` whose class lives in torch, which is no
help in a code review. So we walk up the qualified name to the first module whose class
is user code (``layer3.1``, a ``BasicBlock``) and point at the line that assigns the
child (``self.conv1 = ...``), else at the class statement. Functional ops (``x + y``)
start from their enclosing module. Without a user class the model file is the location.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import torch
import torch.nn as nn

import rfalint
from rfalint.api import CheckResult

# Classes defined under these directories are library code, never a useful location.
LIBRARY_DIRS = tuple(Path(m.__file__).resolve().parent for m in (torch, rfalint))


@dataclass(frozen=True)
class Location:
    path: Path  # absolute
    line: int | None = None  # 1-based


def display_path(path: Path) -> str:
    """POSIX path relative to the current directory when inside it, else absolute."""
    try:
        return PurePosixPath(path.relative_to(Path.cwd().resolve())).as_posix()
    except ValueError:
        return path.as_posix()


@lru_cache(maxsize=None)
def _class_source(cls: type) -> tuple[Path, int, tuple[str, ...]] | None:
    """(file, first line, source lines) of a user-code class, None for library classes."""
    try:
        file = inspect.getsourcefile(cls)
        lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    if file is None:
        return None
    path = Path(file).resolve()
    if any(path.is_relative_to(d) for d in LIBRARY_DIRS):
        return None
    return path, max(start, 1), tuple(lines)


def _class_location(cls: type, attribute: str | None) -> Location | None:
    """Where ``self.<attribute> = ...`` is assigned in ``cls`` or a user base, else the class."""
    found = None
    for klass in cls.__mro__:
        source = _class_source(klass)
        if source is None:
            continue
        path, start, lines = source
        found = found or Location(path, start)
        if attribute is None:
            break
        assign = re.compile(rf"\bself\.{re.escape(attribute)}\s*(:[^=]*)?=(?!=)")
        for offset, text in enumerate(lines):
            if assign.search(text):
                return Location(path, start + offset)
    return found


class Locator:
    """Source locations of the layers of one checked model."""

    def __init__(self, result: CheckResult):
        self.result = result
        model = result.model
        self.qualnames = {id(m): n for n, m in model.named_modules()} if model is not None else {}

    def fallback(self) -> Location | None:
        source = self.result.source
        return Location(source.resolve()) if source is not None and source.is_file() else None

    def locate(self, layer: str | None) -> Location | None:
        model = self.result.model
        graph = self.result.analysis.graph
        if layer is None or model is None:
            return self.fallback()
        try:
            node = graph.by_name(layer)
        except KeyError:
            return self.fallback()
        if node.module is not None and id(node.module) in self.qualnames:
            qualname = self.qualnames[id(node.module)]
        else:
            qualname = node.scope
        parts = qualname.split(".") if qualname else []
        for depth in range(len(parts), -1, -1):
            try:
                owner: nn.Module = model.get_submodule(".".join(parts[:depth]))
            except AttributeError:
                continue
            attribute = parts[depth] if depth < len(parts) else None
            found = _class_location(type(owner), attribute)
            if found is not None:
                return found
        return self.fallback()


def relative_uri(path: Path) -> tuple[str, bool]:
    """(URI reference, relative?) for SARIF: relative to the cwd when inside it."""
    shown = display_path(path)
    if os.path.isabs(shown):
        return path.as_uri(), False
    return quote(shown), True
