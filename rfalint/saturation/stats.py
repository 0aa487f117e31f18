"""Streaming covariance of layer outputs and the saturation computed from it (SCIENCE.md §4).

Per measured layer three float64 accumulators are kept, as in delve (dissertation §6.1.3,
eq. 11): ``Σ xᵀx`` (C x C), ``Σ x`` (C) and the observation count ``n``. Channels are the
features; every spatial position of every sample is one observation. Memory is
``O(C²)`` per layer whatever the dataset size, and the three sums add up across batches
and across processes, which is what makes the ``torch.distributed`` all-reduce exact.

Hot path: one ``addmm`` per layer per batch, in float64. The layer output is copied once
into a float64 ``(observations, C)`` buffer (conversion and channels-last transpose in a
single pass) and multiplied with itself in place into the accumulator. Summing in float64
keeps ``cov = Σxᵀx/n − mean meanᵀ`` free of the cancellation a float32 sum would suffer
when a channel's mean is large next to its spread; on CPU the float64 GEMM costs about
2x a float32 one, which measured at roughly 10–25 % of a ResNet18 forward (see
``benchmarks/bench_saturation.py``), so there was no reason to trade precision away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

# Which layers are measured and where their feature (channel) axis is. Only layers with
# trainable weights count (dissertation §8.4: pooling, flatten, dropout would oversample
# the feature space of the layer before them). Lookup walks the type's MRO, so subclasses
# (LazyConv2d, ConvTranspose*, user subclasses of Linear) are covered.
FEATURE_DIM: dict[type, int] = {nn.modules.conv._ConvNd: 1, nn.Linear: -1}


def feature_dim(module: nn.Module) -> int | None:
    """The channel axis of ``module``'s output, or None when the layer is not measured."""
    for base in type(module).__mro__:
        if base in FEATURE_DIM:
            return FEATURE_DIM[base]
    return None


class CovarianceAccumulator:
    """Σxᵀx, Σx and n of one layer's outputs, in float64 on the layer's device."""

    def __init__(self, channels: int, device: torch.device | str = "cpu"):
        self.channels = channels
        self.sxx = torch.zeros(channels, channels, dtype=torch.float64, device=device)
        self.sx = torch.zeros(channels, dtype=torch.float64, device=device)
        self.n = torch.zeros((), dtype=torch.float64, device=device)  # float64: exact to 2**53

    def update(self, output: torch.Tensor, dim: int = 1) -> None:
        """Add every position of ``output`` (features on axis ``dim``) as observations."""
        moved = output.detach().movedim(dim, -1)
        rows = torch.empty(moved.shape, dtype=torch.float64, device=moved.device)
        rows.copy_(moved)  # one pass: float64 conversion and channels-last layout
        rows = rows.view(-1, self.channels)
        torch.addmm(self.sxx, rows.T, rows, out=self.sxx)
        self.sx += rows.sum(0)
        self.n += rows.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        """The sums, for an element-wise all-reduce across processes."""
        return [self.sxx, self.sx, self.n]

    @property
    def observations(self) -> int:
        return int(self.n.item())

    def covariance(self) -> torch.Tensor:
        """Population covariance ``Σxᵀx/n − mean meanᵀ`` (float64, CPU, symmetrised)."""
        n = self.n.item()
        if n == 0:
            raise ValueError("covariance of zero observations")
        mean = self.sx.cpu() / n
        cov = self.sxx.cpu() / n - torch.outer(mean, mean)
        return (cov + cov.T) / 2


def eigenvalues(cov: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a covariance, largest first, with round-off noise set to zero.

    ``eigvalsh`` is ``eigh`` without the eigenvectors (same LAPACK solver, less work).
    Values below ``C * eps * λ_max`` (the rank tolerance numpy's ``matrix_rank`` uses) and
    the slightly negative values round-off produces are not variance; they are zeroed so
    that ``delta = 1`` and rank-deficient layers give the exact rank.
    """
    values = torch.linalg.eigvalsh(cov.to(torch.float64)).flip(0)
    top = values[0].item() if values.numel() else 0.0
    tol = max(top, 0.0) * values.numel() * torch.finfo(torch.float64).eps
    return torch.where(values > tol, values, torch.zeros_like(values))


def intrinsic_dimension(values: torch.Tensor, delta: float) -> int:
    """Smallest k whose top-k eigenvalues explain at least ``delta`` of the variance.

    ``values`` are sorted largest first. delve counts the eigenvalues whose cumulative
    share is *below* delta, which is one direction short (k − 1; 0 for ``[1, 0, 0]``);
    we return k, as the definition of saturation asks. A layer without variance (constant
    output) needs no direction: k = 0.
    """
    if not 0 < delta <= 1:
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    cumulative = torch.cumsum(values.to(torch.float64), 0)
    total = cumulative[-1].item() if cumulative.numel() else 0.0
    if total <= 0:
        return 0
    # Compare against delta * total, with total the last cumulative entry itself, so that
    # delta = 1 is reached exactly at the last non-zero eigenvalue.
    return int(torch.searchsorted(cumulative, torch.tensor(delta * total, dtype=torch.float64),
                                  right=False).item()) + 1


@dataclass
class LayerStats:
    """What the covariance of one layer's outputs says."""

    channels: int
    observations: int
    intrinsic_dim: int | None  # None when undefined (observations < channels)
    total_variance: float | None

    @property
    def defined(self) -> bool:
        return self.intrinsic_dim is not None

    @property
    def saturation(self) -> float | None:
        return None if self.intrinsic_dim is None else self.intrinsic_dim / self.channels


def layer_stats(acc: CovarianceAccumulator, delta: float) -> LayerStats:
    """Saturation inputs of one layer; undefined with fewer observations than channels
    (the covariance then has rank < C, so k/C would measure the sample size, not the layer)."""
    n = acc.observations
    if n < acc.channels:
        return LayerStats(acc.channels, n, None, None)
    values = eigenvalues(acc.covariance())
    return LayerStats(acc.channels, n, intrinsic_dimension(values, delta),
                      float(values.sum().item()))


class Recorder:
    """Forward hooks that feed each measured module's outputs into its accumulator.

    A module called several times per forward pools the outputs of all its calls (its one
    weight tensor sees them all); the report places it at its first call.
    """

    def __init__(self, modules: dict[str, nn.Module], device: torch.device | str):
        self.accumulators: dict[str, CovarianceAccumulator] = {}
        self._handles = []
        for name, module in modules.items():
            dim = feature_dim(module)
            channels = module.out_channels if dim == 1 else module.out_features
            acc = CovarianceAccumulator(channels, device)
            self.accumulators[name] = acc
            self._handles.append(module.register_forward_hook(self._hook(acc, dim)))

    @staticmethod
    def _hook(acc: CovarianceAccumulator, dim: int):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            acc.update(output, dim)
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
