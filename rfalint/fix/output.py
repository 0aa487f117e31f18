"""Where ``fix`` writes: checked before any work, written only after verification.

Every path is checked up front (:func:`rfalint.fileio.check_writable`: not an input, not
existing unless ``force``, a writable directory), so a verified result is never half
written; each file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rfalint.errors import UsageError
from rfalint.fileio import check_writable, write_atomic


@dataclass(frozen=True)
class Outputs:
    """What a verified fix writes (nothing by default)."""

    output: Path | None = None  # the rewritten model: a YAML spec or Python, by ``emit``
    save_weights: Path | None = None  # its state dict; needs the original ``weights``
    emit: str = "yaml"
    origin: str = ""  # how the model was named (target and arguments), for the header
    force: bool = False  # overwrite existing files
    inputs: tuple[Path | None, ...] = ()  # files never to overwrite (the model's source...)

    def check(self, weights: Path | None) -> None:
        if (weights is None) != (self.save_weights is None):
            raise UsageError("{weights} and {save_weights} go together", options=True)
        for option, path in (("output", self.output), ("save_weights", self.save_weights)):
            if path is not None:
                check_writable(path, option, (*self.inputs, weights), self.force)


def write_all(files: list[tuple[Path, str | bytes]]) -> None:
    for path, data in files:
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
