"""Shared test helpers: load fixtures through rfalint's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest

import rfalint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


# Small widths keep float64 oracle and real-data runs of the fixtures cheap.
SMALL = {"resnet": {"width": 8}, "mpnet": {"width": 8}, "densenet": {"growth_rate": 8},
         "unet": {"width": 4}, "cbam_net": {"width": 8}, "nonsquare": {"width": 8},
         "audio1d": {"width": 8}, "video3d": {"width": 4}, "zoo_": {"width": 8},
         "unet3d": {"width": 2, "depth": 3},
         "repvgg": {"width": 4}, "se_resnet": {"width": 16}, "cbam_resnet18": {"width": 8},
         "bam_resnet18": {"width": 8}, "sk_resnet": {"width": 8, "groups": 4},
         "resnest": {"width": 8}, "attention_unet": {"width": 4}, "stack_fusion": {"width": 4}}
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("[a-z]*.py"))


def fixture_input_shape(name: str) -> tuple[int, ...]:
    """A small input every fixture runs at: 64 px (32 for the Cifar VGGs, whose heads
    flatten a 1x1 map), 4000 samples for the 1-D net, 16x32x32 voxels for 3-D nets."""
    if name.startswith("vgg"):
        return (3, 32, 32)
    channels = {"audio1d": 1, "unet3d_medical": 1}.get(name, 3)
    spatial = {"audio1d": (4000,), "video3d": (16, 32, 32), "unet3d_medical": (16, 32, 32)}
    return (channels, *spatial.get(name, (64, 64)))


def small_kwargs(name: str) -> dict:
    matches = [prefix for prefix in SMALL if name.startswith(prefix)]
    return SMALL[max(matches, key=len)] if matches else {}  # the most specific prefix


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
