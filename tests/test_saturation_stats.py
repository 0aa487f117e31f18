"""Streaming covariance and saturation against numpy, and the k/delta conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import rfalint
from rfalint.saturation.run import measured_layers
from rfalint.saturation.stats import (CovarianceAccumulator, Recorder, eigenvalues,
                                      intrinsic_dimension, layer_stats)


def numpy_k(values: np.ndarray, delta: float) -> int:
    """Reference: smallest k with cumulative share >= delta (values largest first)."""
    share = np.cumsum(values) / values.sum()
    return int(np.argmax(share >= delta)) + 1


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()


def test_covariance_and_eigenvalues_match_numpy_over_uneven_batches():
    model = tiny_net()
    outputs: dict[str, list[np.ndarray]] = {"0": [], "2": [], "5": []}
    for name, module in model.named_modules():
        if name in outputs:
            module.register_forward_hook(
                lambda m, a, y, name=name: outputs[name].append(
                    y.movedim(1, -1).reshape(-1, y.shape[1]).detach().double().numpy()))
    # float32 model, inputs with a mean 60x their spread: an uncentred float32 xᵀx cancels
    # to ~1e-4 of the variance when the covariance is formed; the centred float32 GEMM with
    # float64 sums stays near float32 round-off (~1e-7).
    data = torch.randn(23, 3, 7, 7) * 0.5 + 30.0
    with Recorder({n: model[int(n)] for n in outputs}, "cpu") as recorder:
        for lo, hi in ((0, 1), (1, 8), (8, 23)):
            model(data[lo:hi])
    for name, chunks in outputs.items():
        x = np.concatenate(chunks)
        acc = recorder.accumulators[name].moments()
        assert acc.observations == x.shape[0]
        expected = np.cov(x, rowvar=False, bias=True)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(acc.covariance().numpy(), expected, rtol=0, atol=2e-6 * scale)
        np.testing.assert_allclose(acc.sx.numpy() / x.shape[0], x.mean(0), rtol=1e-6)
        ours = eigenvalues(acc.covariance()).numpy()
        ref = np.sort(np.linalg.eigvalsh(expected))[::-1]
        np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * scale)
        for delta in (0.5, 0.9, 0.99, 1.0):
            assert intrinsic_dimension(torch.from_numpy(ref.copy()), delta) == numpy_k(ref, delta)


def test_positions_are_observations_for_conv1d_and_sequence_linear():
    conv = CovarianceAccumulator(4)
    conv.update(torch.randn(3, 4, 10))  # (N, C, L): 30 observations of 4 channels
    assert conv.moments().observations == 30
    lin = CovarianceAccumulator(6)
    lin.update(torch.randn(2, 5, 6), dim=-1)  # (N, T, F): 10 observations of 6 features
    assert lin.moments().observations == 10


def hadamard_data(variances: list[float]) -> torch.Tensor:
    """Rows whose population covariance is exactly diag(variances), mean exactly 0."""
    h = torch.tensor([[1.0]], dtype=torch.float64)
    while h.shape[0] < len(variances) + 1:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[:, 1:len(variances) + 1] * torch.tensor(variances, dtype=torch.float64).sqrt()


@pytest.mark.parametrize("variances, delta, k", [
    ([0.5, 0.3, 0.15, 0.05], 0.99, 4),
    ([1.0, 0.0, 0.0], 0.99, 1),
    ([1.0, 0.0, 0.0], 1.0, 1),
    ([0.25, 0.25, 0.25, 0.25], 0.75, 3),  # exactly at delta counts (>=); data exact in float32
    ([0.25, 0.25, 0.25, 0.25], 0.7500001, 4),
])
def test_diagonal_covariance_cases(variances, delta, k):
    acc = CovarianceAccumulator(len(variances))
    acc.update(hadamard_data(variances), dim=-1)
    np.testing.assert_allclose(acc.moments().covariance().numpy(), np.diag(variances), atol=1e-7)
    stats = layer_stats(acc.moments(), delta)
    assert stats.intrinsic_dim == k
    assert stats.saturation == k / len(variances)


@pytest.mark.parametrize("values, delta, k", [
    ([0.5, 0.3, 0.15, 0.05], 0.99, 4),
    ([1.0, 0.0, 0.0], 0.99, 1),
    ([0.5, 0.25, 0.125, 0.125], 0.875, 3),  # exactly at delta counts (>=)
    ([0.5, 0.25, 0.125, 0.125], 0.876, 4),
    ([0.5, 0.25, 0.125, 0.125], 0.5, 1),
    ([0.5, 0.25, 0.125, 0.125], 1.0, 4),
])
def test_intrinsic_dimension_of_eigenvalues(values, delta, k):
    assert intrinsic_dimension(torch.tensor(values, dtype=torch.float64), delta) == k


def test_unsorted_order_is_not_assumed_and_delve_off_by_one_is_avoided():
    # delve keeps the directions with cumulative share < delta: k - 1 for [0.5, 0.3, 0.15, 0.05].
    values = eigenvalues(torch.diag(torch.tensor([0.15, 0.5, 0.05, 0.3], dtype=torch.float64)))
    assert values.tolist() == [0.5, 0.3, 0.15, 0.05]
    assert intrinsic_dimension(values, 0.99) == 4


def test_fewer_observations_than_channels_is_undefined():
    acc = CovarianceAccumulator(8)
    acc.update(torch.randn(5, 8), dim=-1)
    stats = layer_stats(acc.moments(), 0.99)
    assert not stats.defined and stats.saturation is None and stats.observations == 5


def test_constant_layer_needs_no_direction():
    acc = CovarianceAccumulator(3)
    acc.update(torch.full((10, 3), 7.0), dim=-1)
    assert layer_stats(acc.moments(), 0.99).intrinsic_dim == 0


@pytest.mark.parametrize("delta", [0.0, -0.1, 1.01, float("nan")])
def test_delta_outside_unit_interval_is_rejected(delta):
    with pytest.raises(ValueError):
        intrinsic_dimension(torch.tensor([1.0]), delta)


def test_measured_layers_use_the_graph_names_in_execution_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3)  # defined first, runs second
            self.early = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            x = self.late(self.early(x))
            return self.head(x.mean((2, 3)))

    analysis = rfalint.analyze(Net(), (3, 9, 9))
    assert [n.name for n in measured_layers(analysis)] == ["early", "late", "head"]
