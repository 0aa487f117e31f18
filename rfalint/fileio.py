"""Writing output files: atomically, and never over one of the run's input files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from rfalint.errors import UsageError


def refuse_inputs(path: Path, inputs: Iterable[Path | None], option: str) -> None:
    """UsageError when ``path`` is one of ``inputs`` (model files, config, baseline)."""
    target = path.resolve()
    if any(p is not None and p.resolve() == target for p in inputs):
        raise UsageError(f"{option} {path}: refusing to overwrite an input file")


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
