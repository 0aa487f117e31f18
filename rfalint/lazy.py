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
    """``__getattr__`` and ``__dir__`` for ``package`` serving ``{name: module}`` lazily
    (``{"ops": "rfalint.ops"}`` serves the subpackage itself)."""
    namespace = vars(importlib.import_module(package))

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        # a name that is the module itself: a subpackage, such as rfalint.ops
        value = module if names[name] == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
