"""Timing helpers shared by the benchmark scripts (run them from anywhere: the repo root
is put on sys.path so the scripts measure this checkout's rfalint)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def timings(fn, repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn``."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def best_of(repeat: int, fn) -> float:
    return min(timings(fn, repeat))


def median_of(repeat: int, fn) -> float:
    fn()  # warm-up
    return statistics.median(timings(fn, repeat))


def machine_line(extra: str = "") -> str:
    """What the figures depend on: torch version, threads and the load average."""
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {os.getloadavg()[0]:.2f}{', ' + extra if extra else ''}")
