"""Helpers for the CLI tests: run ``rfalint`` in-process, and tiny model files.

``run`` goes through ``rfalint.cli.main`` (not typer's CliRunner) so that errors become
exit code 2 with one line on stderr, exactly as the installed command behaves.
"""

from __future__ import annotations

import contextlib
import io
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from rfalint.cli import main

# Deep: six 3x3 convs; at 8 px body.4 is the border layer b_min (RFA101 errors on body.4
# and body.5). shallow(): two convs; clean at 4 px, under-coverage warning at 16 px.
# Residual: blocks with a functional skip (x + y); critical convs at 4 px; its forward
# reads a tensor value (RFA203, a finding without a layer).
# broken(): the factory raises, a load error.
MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn


    class Deep(nn.Module):
        def __init__(self, depth=6):
            super().__init__()
            self.body = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(depth)])
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.pool(self.body(x)).flatten(1))


    def shallow():
        return Deep(depth=2)


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x + self.conv(x))


    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 3, 3, padding=1)
            self.blocks = nn.Sequential(Block(), Block(), Block())
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            if x.mean() > 1e9:  # data-dependent: RFA203, a finding without a layer
                x = x * 0
            return self.fc(x.mean((2, 3)))


    def broken():
        raise RuntimeError("boom")
''')


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["rfalint", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


def project(root: Path, config: str | None = None, name: str = "pyproject.toml") -> Path:
    """A directory with ``models.py`` and, if given, a config file; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.py").write_text(MODELS)
    if config is not None:
        (root / name).write_text(textwrap.dedent(config))
    return root


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
