"""Streaming covariance of layer outputs and the saturation computed from it
(docs/method.md §7).

Per measured layer the sums of delve (dissertation §6.1.3, eq. 11) are formed: ``Σ xᵀx``
(C x C), ``Σ x`` (C) and the observation count ``n`` (:class:`Moments`). Channels are the
features; every spatial position of every sample is one observation. Memory is ``O(C²)``
per layer whatever the dataset size, and the three sums add up across batches and
processes, which is what makes the ``torch.distributed`` all-reduce exact.

Hot path (:class:`CovarianceAccumulator`): per layer per batch one float32 matmul of the
batch *centred* on a fixed shift c (the first batch's mean), with a column of ones
appended so that the same product also yields the column sums; the result is added into
sums ``S = Σ(x−c)(x−c)ᵀ`` and ``D = Σ(x−c)`` kept on the model's device. At the end
``Σxᵀx = S + c Dᵀ + D cᵀ + n c cᵀ`` and ``Σx = D + n c`` are formed in float64. Why
float32 is safe in the product: it only sees centred values, so its rounding error (about
1e-7 of the layer's variance) is relative to the spread and never amplified by a large
mean, whereas an uncentred float32 ``xᵀx`` loses digits in proportion to mean²/variance
(the tests show 3e-3 against 2e-7 for a mean 60x the spread). The sums are float64 where
the device has float64; elsewhere (Apple's MPS) they are float32 with Kahan-compensated
additions, so the error does not grow with the number of batches (measured in the tests).
Matmuls run at full float32 precision even when the user's code allowed TF32/bf16 ones.

Layout: a conv output is ``(N, C, *spatial)``. The centred matrix is written
channel-major, ``(C+1, N·positions)``: each sample's map of one channel is a contiguous
run, so the centring copy moves whole runs instead of transposing element by element (a
rows-of-C layout would), and one product covers every sample (no per-sample products to
sum). Linear layers and channels-last maps are features-last already and are written as
rows. See ``benchmarks/bench_saturation.py`` for the cost against plain inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

# Which layers are measured and where their feature (channel) axis is. Only layers with
# trainable weights count (dissertation §8.4: pooling, flatten, dropout would oversample
# the feature space of the layer before them). Lookup walks the type's MRO, so subclasses
# (LazyConv2d, ConvTranspose*, user subclasses of Linear) are covered.
FEATURE_DIM: dict[type, int] = {nn.modules.conv._ConvNd: 1, nn.Linear: -1}
# Covariances at least this wide are decomposed on a CUDA device rather than copied to
# the CPU: LAPACK's cost grows as C³ and a GPU solver pays off only on large matrices.
# A judgement, not measured here (no GPU on the development machine).
DEVICE_EIGEN_MIN_CHANNELS = 256
# The C + 1 rows of the centred matrix are padded with zero rows to a multiple of this
# when that adds at most 1/16 of the work: C + 1 = 513 or 2049 is misaligned for the GEMM
# kernels (measured up to 2x slower on ResNet layers), while padding 65 to 80 costs more
# than it saves.
ROW_ALIGN = 16


def padded(size: int) -> int:
    aligned = -(-size // ROW_ALIGN) * ROW_ALIGN
    return aligned if (aligned - size) * ROW_ALIGN <= size else size


def feature_dim(module: nn.Module) -> int | None:
    """The channel axis of ``module``'s output, or None when the layer is not measured."""
    for base in type(module).__mro__:
        if base in FEATURE_DIM:
            return FEATURE_DIM[base]
    return None


def out_features(module: nn.Module) -> int:
    return module.out_channels if feature_dim(module) == 1 else module.out_features


_FLOAT64: dict[str, bool] = {}


def has_float64(device: torch.device) -> bool:
    """Whether ``device`` computes in float64 (CPU and CUDA do, Apple's MPS does not)."""
    if device.type not in _FLOAT64:
        try:
            torch.zeros(1, dtype=torch.float64, device=device).add_(1)
            _FLOAT64[device.type] = True
        except (TypeError, RuntimeError):
            _FLOAT64[device.type] = False
    return _FLOAT64[device.type]


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
    """One float32 buffer reused by every layer's update: the centred copy of a layer's
    output lives only inside its hook, and reusing its memory saves the page faults of a
    fresh multi-megabyte allocation per layer per batch (measured ~15 % of the hook)."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None

    def take(self, size: int, device: torch.device) -> torch.Tensor:
        if self.buffer is None or self.buffer.numel() < size or self.buffer.device != device:
            self.buffer = torch.empty(size, dtype=torch.float32, device=device)
        return self.buffer[:size]


@dataclass
class Moments:
    """The sums Σxᵀx (C x C), Σx (C) and n of one layer's outputs; float64 (on the CPU
    when the accumulating device has no float64)."""

    sxx: torch.Tensor
    sx: torch.Tensor
    n: torch.Tensor  # 0-d int64: exact, and all-reducible

    @property
    def channels(self) -> int:
        return self.sx.numel()

    @property
    def observations(self) -> int:
        return int(self.n.item())

    def tensors(self) -> list[torch.Tensor]:
        """The sums, for an element-wise all-reduce across processes."""
        return [self.sxx, self.sx, self.n]

    def covariance(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Population covariance ``Σxᵀx/n − mean meanᵀ`` (float64, symmetrised)."""
        n = self.observations
        if n == 0:
            raise ValueError("covariance of zero observations")
        mean = self.sx.to(device) / n
        cov = self.sxx.to(device) / n - torch.outer(mean, mean)
        return (cov + cov.T) / 2


class CovarianceAccumulator:
    """Streams one layer's outputs into sums around a fixed shift ``c``.

    ``c`` is the first batch's mean (float32). The running sum is the Gram matrix of the
    centred observations with a one appended, ``G = Σ [x−c, 1]ᵀ[x−c, 1]``: its top-left
    block is ``S = Σ(x−c)(x−c)ᵀ``, its last column ``D = Σ(x−c)``. One matmul and one
    addition per batch, no host synchronisation: the observation count is known from the
    shape. The sums live on the device of the first output seen (``device`` is where
    empty sums are made, for ranks that see no data).
    """

    def __init__(self, channels: int, device: torch.device | str = "cpu",
                 float64: bool | None = None):
        self.channels = channels
        self.device = torch.device(device)
        self.float64 = float64  # None: float64 where the device has it
        self.shift: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None
        self.compensation: torch.Tensor | None = None  # Kahan term of float32 sums
        self.count = 0

    def update(self, output: torch.Tensor, dim: int = 1, scratch: Scratch | None = None) -> None:
        """Add every position of ``output`` (features on axis ``dim``) as observations."""
        x = output.detach()
        if x.dtype != torch.float32:
            x = x.float()
        channels = self.channels
        count = x.numel() // channels
        if count == 0:
            return
        dim = dim % x.dim()
        if self.shift is None:
            self._start(x, dim)
        scratch = scratch or Scratch()
        width = padded(channels + 1)
        with full_precision_matmul():
            if dim == 1 and x.dim() > 2 and x.is_contiguous():
                centred = self._channel_major(x, width, scratch)
            else:
                centred = self._rows(x, dim, count, width, scratch)
            gram = (centred @ centred.T)[:channels + 1, :channels + 1]
        self._add(gram)
        self.count += count

    def _start(self, x: torch.Tensor, dim: int) -> None:
        self.shift = x.mean([d for d in range(x.dim()) if d != dim])
        self.device = x.device
        self.float64 = has_float64(x.device) if self.float64 is None else self.float64
        dtype = torch.float64 if self.float64 else torch.float32
        size = self.channels + 1
        self.gram = torch.zeros(size, size, dtype=dtype, device=x.device)
        if not self.float64:
            self.compensation = torch.zeros_like(self.gram)

    def _channel_major(self, x: torch.Tensor, width: int, scratch: Scratch) -> torch.Tensor:
        """``[x − c; 1; 0…]`` as a (width, observations) matrix, from a channels-first
        output: each sample's map of a channel is a contiguous run, so the copy moves
        whole runs (no per-element transpose) and one product covers every sample."""
        samples, channels = x.shape[0], self.channels
        positions = x.numel() // (samples * channels)
        out = scratch.take(width * samples * positions, x.device).view(width, samples, positions)
        torch.sub(x.view(samples, channels, positions).transpose(0, 1),
                  self.shift.view(channels, 1, 1), out=out[:channels])
        out[channels].fill_(1.0)
        out[channels + 1:].zero_()
        return out.view(width, samples * positions)

    def _rows(self, x: torch.Tensor, dim: int, count: int, width: int,
              scratch: Scratch) -> torch.Tensor:
        """The same matrix from features-last data (linear layers, channels-last maps),
        written as (observations, width) rows in one pass and returned transposed."""
        channels = self.channels
        rows = scratch.take(count * width, x.device).view(count, width)
        moved = x.movedim(dim, -1)
        torch.sub(moved, self.shift, out=rows[:, :channels].view(moved.shape))
        rows[:, channels].fill_(1.0)
        rows[:, channels + 1:].zero_()
        return rows.T

    def _add(self, gram: torch.Tensor) -> None:
        if self.compensation is None:
            self.gram += gram
            return
        # Kahan summation: float32 sums whose error does not grow with the batch count.
        y = gram - self.compensation
        total = self.gram + y
        torch.sub(total - self.gram, y, out=self.compensation)
        self.gram = total

    def moments(self) -> Moments:
        """Σxᵀx = S + c Dᵀ + D cᵀ + n c cᵀ and Σx = D + n c, in float64."""
        device = self.device if has_float64(self.device) else torch.device("cpu")
        channels = self.channels
        n = torch.tensor(self.count, dtype=torch.int64, device=device)
        if self.gram is None:
            zeros = torch.zeros(channels, dtype=torch.float64, device=device)
            return Moments(torch.zeros(channels, channels, dtype=torch.float64, device=device),
                           zeros, n)
        gram = self.gram.to(device, torch.float64)
        if self.compensation is not None:
            gram -= self.compensation.to(device, torch.float64)
        s, d = gram[:channels, :channels], gram[:channels, channels]
        c = self.shift.to(device, torch.float64)
        sxx = s.clone().addr_(c, d).addr_(d, c).addr_(c, c, alpha=self.count)
        return Moments(sxx, d + self.count * c, n)


def eigenvalues(cov: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a covariance (or a batch of them), largest first, with round-off
    noise set to zero.

    ``eigvalsh`` is ``eigh`` without the eigenvectors (same solver, less work). Values
    below ``C * eps * λ_max`` (the rank tolerance numpy's ``matrix_rank`` uses) and the
    slightly negative values round-off produces are not variance; they are zeroed so that
    ``delta = 1`` and rank-deficient layers give the exact rank.
    """
    values = torch.linalg.eigvalsh(cov.to(torch.float64)).flip(-1)
    channels = values.shape[-1]
    top = values[..., :1].clamp(min=0.0) if channels else values
    tol = top * channels * torch.finfo(torch.float64).eps
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
    """Saturation inputs of one layer (see :func:`all_layer_stats`)."""
    return all_layer_stats({"layer": moments}, delta)["layer"]


def _eigen_device(moments: Moments) -> torch.device:
    device = moments.sxx.device
    if device.type == "cuda" and moments.channels >= DEVICE_EIGEN_MIN_CHANNELS:
        return device
    return torch.device("cpu")


def all_layer_stats(moments: Mapping[str, Moments], delta: float) -> dict[str, LayerStats]:
    """Saturation inputs of every layer. Undefined with fewer observations than channels
    (the covariance then has rank < C, so k/C would measure the sample size, not the
    layer). Layers of one width are decomposed in one batched call, on the GPU when they
    are wide (:data:`DEVICE_EIGEN_MIN_CHANNELS`)."""
    if not 0 < delta <= 1:
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    stats: dict[str, LayerStats] = {}
    groups: dict[tuple[int, torch.device], list[str]] = {}
    for name, m in moments.items():
        if m.observations < m.channels:
            stats[name] = LayerStats(m.channels, m.observations, None, None)
        else:
            groups.setdefault((m.channels, _eigen_device(m)), []).append(name)
    for (channels, device), names in groups.items():
        batch = torch.stack([moments[name].covariance(device) for name in names])
        values = eigenvalues(batch).cpu()
        for name, row in zip(names, values):
            stats[name] = LayerStats(channels, moments[name].observations,
                                     intrinsic_dimension(row, delta), float(row.sum().item()))
    return {name: stats[name] for name in moments}


class Recorder:
    """Forward hooks that feed each measured module's outputs into its accumulator.

    A module called several times per forward pools the outputs of all its calls (its one
    weight tensor sees them all). With ``every = k`` only every k-th forward pass of
    ``root`` is recorded (a pre-hook on ``root`` counts them; the layer hooks test a
    Python flag, so skipped passes cost next to nothing). ``paused`` stops recording.
    """

    def __init__(self, modules: Mapping[str, nn.Module], device: torch.device | str = "cpu",
                 every: int = 1, root: nn.Module | None = None, float64: bool | None = None):
        if every < 1:
            raise ValueError(f"every must be a positive integer, got {every}")
        self.accumulators: dict[str, CovarianceAccumulator] = {}
        self.scratch = Scratch()
        self.every = every
        self.passes = 0
        self.active = True
        self.paused = False
        self.order: list[str] = []  # names in the order the layers first ran
        self._handles = []
        for name, module in modules.items():
            acc = CovarianceAccumulator(out_features(module), device, float64)
            self.accumulators[name] = acc
            self._handles.append(module.register_forward_hook(
                self._hook(name, acc, feature_dim(module))))
        if every > 1:
            if root is None:
                raise ValueError("every > 1 needs the root module whose passes are counted")
            self._handles.append(root.register_forward_pre_hook(self._count))

    def _count(self, module: nn.Module, args) -> None:
        self.active = self.passes % self.every == 0
        self.passes += 1

    def _hook(self, name: str, acc: CovarianceAccumulator, dim: int):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            if self.active and not self.paused:
                if acc.shift is None:
                    self.order.append(name)
                acc.update(output, dim, self.scratch)
        return hook

    def moments(self) -> dict[str, Moments]:
        return {name: acc.moments() for name, acc in self.accumulators.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
