"""Package attributes imported on first use (PEP 562).

``rfalint`` and ``rfalint.report`` re-export names from heavy submodules (torch, rich).
Importing those eagerly would make every process pay for them, also one that only needs a
small part, such as ``check --format json`` or the ``rfalint`` launcher, which must set up
the garbage collector before torch is imported (:mod:`rfalint.__main__`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any],
                                                          Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` serving ``{name: module}`` lazily."""
    namespace = vars(importlib.import_module(package))

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
