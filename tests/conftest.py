"""Shared test helpers: load fixtures through rfalint's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest

import rfalint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def fixture_model(name: str, **kwargs):
    """Build ``fixtures/<name>.py`` with factory kwargs."""
    return rfalint.load_model(str(FIXTURES / f"{name}.py"), kwargs).model


def analyse_fixture(name: str, input_shape, **kwargs):
    return rfalint.analyze(fixture_model(name, **kwargs), input_shape, name=name)


def conv_sequence(analysis, attr: str = "r_max") -> list[int]:
    """Per-axis-0 RF of the output of every conv of the main path."""
    return [getattr(analysis.rfs[layer.node], attr)[0] for layer in analysis.border.sequence]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """Many small float64 ops gain nothing from intra-op threads on a busy CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
