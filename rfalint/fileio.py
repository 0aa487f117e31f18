"""Writing output files: atomically, and never over one of the run's input files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from rfalint.errors import UsageError


def refuse_inputs(path: Path, inputs: Iterable[Path | None], option: str) -> None:
    """UsageError when ``path`` is one of ``inputs`` (model files, config, baseline);
    ``option`` names the parameter that gave ``path`` (see :mod:`rfalint.errors`)."""
    target = path.resolve()
    if any(p is not None and p.resolve() == target for p in inputs):
        raise UsageError(f"{{{option}}} {path}: refusing to overwrite an input file",
                         options=True)


def check_writable(path: Path, option: str, inputs: Iterable[Path | None],
                   force: bool) -> None:
    """Before any work: ``path`` is not an input, exists only with ``force``, is not a
    directory, and its directory exists and is writable. Raises UsageError."""
    refuse_inputs(path, list(inputs), option)
    if path.exists() and not force:
        raise UsageError(f"{{{option}}} {path} exists; pass {{force}} to overwrite it",
                         options=True)
    if path.is_dir():
        raise UsageError(f"{{{option}}} {path} is a directory", options=True)
    directory = path.resolve().parent
    if not directory.is_dir():
        raise UsageError(f"{{{option}}} {path}: directory {directory} does not exist",
                         options=True)
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{{{option}}} {path}: directory {directory} is not writable",
                         options=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temp file in the same directory, then rename: readers never see half."""
    directory = path.resolve().parent
    if not directory.is_dir():
        raise UsageError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
