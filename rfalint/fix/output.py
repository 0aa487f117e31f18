"""Where ``fix`` writes: checked before any work, written only after verification.

Every path is checked up front (not an input, not existing unless ``force``, a writable
directory), so a verified result is never half written; each file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from rfalint.errors import UsageError
from rfalint.fileio import refuse_inputs, write_atomic


def check_output(path: Path, option: str, inputs: Iterable[Path | None], force: bool) -> None:
    refuse_inputs(path, list(inputs), option)
    if path.exists() and not force:
        raise UsageError(f"{option} {path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory")
    directory = path.resolve().parent
    if not directory.is_dir():
        raise UsageError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{option} {path}: directory {directory} is not writable")


def write_all(files: list[tuple[Path, str | bytes]]) -> None:
    for path, data in files:
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
