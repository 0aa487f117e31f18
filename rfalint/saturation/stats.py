"""Streaming covariance of layer outputs and the saturation computed from it (docs/method.md §7).

Per measured layer the float64 sums of delve (dissertation §6.1.3, eq. 11) are formed:
``Σ xᵀx`` (C x C), ``Σ x`` (C) and the observation count ``n`` (:class:`Moments`).
Channels are the features; every spatial position of every sample is one observation.
Memory is ``O(C²)`` per layer whatever the dataset size, and the three sums add up
across batches and processes, which is what makes the ``torch.distributed`` all-reduce
exact.

Hot path (:class:`CovarianceAccumulator`): per layer per batch one float32 GEMM of the
batch *centred* on a fixed shift c (the first batch's mean: later batches' means differ
from it by about the spread, not by the mean, so they stay centred), added into float64 sums
``S = Σ(x−c)(x−c)ᵀ`` and ``D = Σ(x−c)``; at the end ``Σxᵀx = S + c Dᵀ + D cᵀ + n c cᵀ``
and ``Σx = D + n c`` exactly, in float64. Why float32 is safe there: the GEMM only sees
centred values, so its rounding error (about 1e-7 of the layer's variance, up to ~1e-5
for very large batches) is relative to the spread and never amplified by a large mean,
whereas an uncentred float32 ``xᵀx`` loses digits in proportion to mean²/variance once
the covariance is formed (the tests show 3e-3 against 2e-7 for a mean 60x the spread).
Either is far below the sampling error of a covariance from n observations (about
1/√n, 1e-3 for a million). The large terms ``c cᵀ`` meet and cancel in float64 only.
Against a float64 GEMM this halves the matmul and copy cost
(``benchmarks/bench_saturation.py``). Matmuls run at full float32 precision even when the
user's code allowed TF32/bf16 ones.
"""

from __future__ import annotations

import math
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


class full_precision_matmul:
    """Plain float32 matmuls for the duration (no TF32/bf16), restoring the user's setting."""

    def __enter__(self) -> None:
        self.saved = torch.get_float32_matmul_precision()
        if self.saved != "highest":
            torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc) -> None:
        if self.saved != "highest":
            torch.set_float32_matmul_precision(self.saved)


class Scratch:
    """Buffers reused by every layer's update. The centred copy of a layer's output is
    needed only inside its hook; reusing its memory saves the page faults of a fresh
    multi-megabyte allocation per layer per batch (measured ~15 % of the hook). The ones
    vector turns the column sum into a GEMV, much faster than a column reduction on GPU."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None
        self.ones: torch.Tensor | None = None

    def take(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        size = math.prod(shape)
        if self.buffer is None or self.buffer.numel() < size or self.buffer.device != device:
            self.buffer = torch.empty(size, dtype=torch.float32, device=device)
        return self.buffer[:size].view(shape)

    def ones_like_rows(self, count: int, device: torch.device) -> torch.Tensor:
        if self.ones is None or self.ones.numel() < count or self.ones.device != device:
            self.ones = torch.ones(count, dtype=torch.float32, device=device)
        return self.ones[:count]


@dataclass
class Moments:
    """The float64 sums Σxᵀx (C x C), Σx (C) and n of one layer's outputs."""

    sxx: torch.Tensor
    sx: torch.Tensor
    n: torch.Tensor  # 0-d float64: exact to 2**53 observations, and all-reducible

    @property
    def channels(self) -> int:
        return self.sx.numel()

    @property
    def observations(self) -> int:
        return int(self.n.item())

    def tensors(self) -> list[torch.Tensor]:
        """The sums, for an element-wise all-reduce across processes."""
        return [self.sxx, self.sx, self.n]

    def covariance(self) -> torch.Tensor:
        """Population covariance ``Σxᵀx/n − mean meanᵀ`` (float64, CPU, symmetrised)."""
        n = self.n.item()
        if n == 0:
            raise ValueError("covariance of zero observations")
        mean = self.sx.cpu() / n
        cov = self.sxx.cpu() / n - torch.outer(mean, mean)
        return (cov + cov.T) / 2


class CovarianceAccumulator:
    """Streams one layer's outputs into float64 sums around a fixed shift ``c``.

    ``c`` is the first batch's mean (float32); the running sums are ``S = Σ(x−c)(x−c)ᵀ``
    and ``D = Σ(x−c)`` in float64, and :meth:`moments` turns them into the plain
    Σxᵀx, Σx, n exactly. Per batch that is five tensor ops (centre, GEMM, GEMV, two
    adds), which matters on GPUs where a hook's cost is mostly kernel launches.
    """

    def __init__(self, channels: int, device: torch.device | str = "cpu"):
        self.channels = channels
        self.shift: torch.Tensor | None = None
        self.s = torch.zeros(channels, channels, dtype=torch.float64, device=device)
        self.d = torch.zeros(channels, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, output: torch.Tensor, dim: int = 1, scratch: Scratch | None = None) -> None:
        """Add every position of ``output`` (features on axis ``dim``) as observations."""
        moved = output.detach().movedim(dim, -1)
        if moved.dtype != torch.float32:
            moved = moved.float()
        count = moved.numel() // self.channels
        if count == 0:
            return
        if self.shift is None:
            self.shift = moved.mean(tuple(range(moved.dim() - 1)))
        # One pass: centre, and lay out as contiguous (observations, C) rows.
        scratch = scratch or Scratch()
        rows = scratch.take(moved.shape, moved.device)
        torch.sub(moved, self.shift, out=rows)
        rows = rows.view(count, self.channels)
        with full_precision_matmul():
            self.s += rows.T @ rows  # float32 products, added in float64
            self.d += rows.T @ scratch.ones_like_rows(count, rows.device)
        self.count += count

    def moments(self) -> Moments:
        """Σxᵀx = S + c Dᵀ + D cᵀ + n c cᵀ and Σx = D + n c, in float64."""
        c = self.shift.double() if self.shift is not None else torch.zeros_like(self.d)
        sxx = self.s.clone().addr_(c, self.d).addr_(self.d, c).addr_(c, c, alpha=self.count)
        n = torch.tensor(float(self.count), dtype=torch.float64, device=self.d.device)
        return Moments(sxx, self.d + self.count * c, n)


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

    ``values`` are sorted largest first. delve 0.1.50 (``compute_intrinsic_dimensionality``)
    keeps the eigen-directions whose cumulative share is *below* delta (at least one); its
    branch meant to add the next direction slices an already-trimmed tensor and adds
    nothing, so delve reports k − 1 whenever k > 1 (checked against delve on VGG16: every
    layer one lower). We return k, as the definition of saturation asks. A layer without
    variance (constant output) needs no direction: k = 0.
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


def layer_stats(moments: Moments, delta: float) -> LayerStats:
    """Saturation inputs of one layer; undefined with fewer observations than channels
    (the covariance then has rank < C, so k/C would measure the sample size, not the layer)."""
    n, channels = moments.observations, moments.channels
    if n < channels:
        return LayerStats(channels, n, None, None)
    values = eigenvalues(moments.covariance())
    return LayerStats(channels, n, intrinsic_dimension(values, delta),
                      float(values.sum().item()))


class Recorder:
    """Forward hooks that feed each measured module's outputs into its accumulator.

    A module called several times per forward pools the outputs of all its calls (its one
    weight tensor sees them all); the report places it at its first call.
    """

    def __init__(self, modules: dict[str, nn.Module], device: torch.device | str):
        self.accumulators: dict[str, CovarianceAccumulator] = {}
        self.scratch = Scratch()
        self._handles = []
        for name, module in modules.items():
            dim = feature_dim(module)
            channels = module.out_channels if dim == 1 else module.out_features
            acc = CovarianceAccumulator(channels, device)
            self.accumulators[name] = acc
            self._handles.append(module.register_forward_hook(self._hook(acc, dim)))

    def _hook(self, acc: CovarianceAccumulator, dim: int):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            acc.update(output, dim, self.scratch)
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
