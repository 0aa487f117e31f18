"""User-facing errors. The CLI prints these as one line and exits with code 2.

An error about an option's value names the option as ``{name}`` (the library's parameter
name) and is raised with ``options=True``: ``str(exc)`` reads ``weights x.pt: no such
file`` for library users, and the CLI renders the same error with its flags
(``--weights x.pt: no such file``), so no library module spells a command-line flag.
"""

from __future__ import annotations

import re
from typing import Callable

_OPTION = re.compile(r"\{([a-z_]+)\}")


class RfalintError(Exception):
    """An error caused by the user's input, not by a bug in rfalint."""

    def __init__(self, message: str = "", *, options: bool = False):
        self.template = message if options else None
        super().__init__(_OPTION.sub(r"\1", message) if options else message)

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each ``{option}`` written as ``spell(option)``."""
        if self.template is None:
            return str(self)
        return _OPTION.sub(lambda m: spell(m[1]), self.template)


class UsageError(RfalintError):
    """Bad values of options (resolution, arguments, files to write)."""


class LoadError(RfalintError):
    """The model target cannot be found, imported or constructed."""


class ModelError(RfalintError):
    """The model was loaded but cannot be run or analysed at this resolution."""


class CollapseError(ModelError):
    """A feature map collapses below one position: the model cannot run this small."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none): errors are one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
