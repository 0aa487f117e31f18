"""Writers of Python source for ``fix --emit python``: an op call as torch code."""

from __future__ import annotations

from typing import Any

from rfalint.ops.records import Writer


def kwargs_text(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def call(prefix: str, name: str) -> Writer:
    """``F.max_pool2d(x, kernel_size=2)``: a function of ``torch`` or ``F``."""
    def write(xs: list[str], args: dict[str, Any]) -> str:
        return f"{prefix}.{name}({', '.join([*xs, *([kwargs_text(args)] if args else [])])})"
    return write


def operator(symbol: str) -> Writer:
    return lambda xs, args: f"{xs[0]} {symbol} {xs[1]}"


def reduction(method: str) -> Writer:
    """``x.mean((2, 3), keepdim=True)``."""
    def write(xs: list[str], args: dict[str, Any]) -> str:
        if args.get("dim") is None:
            return f"{xs[0]}.{method}()"
        keep = ", keepdim=True" if args.get("keepdim") else ""
        return f"{xs[0]}.{method}({args['dim']!r}{keep})"
    return write


def per_sample(method: str) -> Writer:
    """``x.view(x.shape[0], 512)``: specs give view/reshape shapes without the batch."""
    def write(xs: list[str], args: dict[str, Any]) -> str:
        shape = ", ".join(map(str, args["shape"]))
        return f"{xs[0]}.{method}({xs[0]}.shape[0], {shape})"
    return write
