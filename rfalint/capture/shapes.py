"""Output shapes of common ops, computed in Python for the shape-only capture.

Why: on meta tensors, torch's own shape kernels for almost every op (conv, add, cat, even
``empty_like``) are Python decompositions whose first call imports sympy and often
``torch._dynamo``: over a second of imports, several times the cost of capturing a ResNet.
For the ops here, the tracer computes the output shape itself and returns an empty tensor
on the input's device (meta or fake), so no kernel runs and nothing heavy is imported.

Exactness: each function returns ``None`` for anything it does not model exactly
(non-contiguous inputs, ``out=``, unusual arguments), and the tracer then calls the real
kernel. Errors a real run would raise (wrong channel count, a window larger than the
padded input) are raised with torch's own wording. The test suite captures every fixture
and random stacks both ways (shape-only and on real data) and asserts identical graphs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

Shape = tuple[int, ...]
ShapeFunction = Callable[[dict[str, Any]], Any]


def empty(shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like`` without its meta decomposition, as batch norms and channel
    shuffles return it: same shape and dtype, and the input's strides when it is contiguous
    or channels-last (otherwise contiguous)."""
    if _dense(x):
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def elementwise_like(x: torch.Tensor) -> torch.Tensor:
    """What elementwise kernels (activations, dropout, clamp) return: the input's strides
    whenever its memory is dense in some order of dims (a permuted map too), otherwise
    contiguous. Views and reshapes after them depend on it."""
    if x.numel() and _dense_in_some_order(x):
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _dense_in_some_order(x: torch.Tensor) -> bool:
    expected = 1
    for size, stride in sorted((p for p in zip(x.shape, x.stride()) if p[0] != 1),
                               key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _dense(x: torch.Tensor) -> bool:
    """Contiguous or channels-last."""
    return x.is_contiguous() or x.dim() in _CHANNELS_LAST \
        and x.is_contiguous(memory_format=_CHANNELS_LAST[x.dim()])


def _channels_last(t: torch.Tensor) -> bool:
    """Laid out channels-last and not also contiguous (1x1 maps and single channels are
    both, and the kernels treat them as contiguous)."""
    return _dense(t) and not t.is_contiguous()


def _plain(x: Any, like: torch.Tensor | None = None, channels_last: bool = False) -> bool:
    """A contiguous (or, with ``channels_last``, also channels-last) tensor without
    autograd history (on ``like``'s device)."""
    return isinstance(x, torch.Tensor) \
        and (_dense(x) if channels_last else x.is_contiguous()) and not x.requires_grad \
        and (like is None or x.device == like.device)


def _ints(value: Any, n: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * n
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        if len(value) == 1:
            return (value[0],) * n
        return tuple(value) if len(value) == n else None
    return None


def _batched(x: torch.Tensor, spatial: int) -> bool | None:
    """True for (N, C, *spatial), False for unbatched (C, *spatial), None otherwise."""
    if x.dim() == spatial + 2:
        return True
    return False if x.dim() == spatial + 1 else None


def _window_sizes(sizes, kernel, stride, padding, dilation, ceil_mode=False) -> list[int]:
    out = []
    for i, k, s, p, d in zip(sizes, kernel, stride, padding, dilation):
        span = i + 2 * p - d * (k - 1) - 1
        n = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (n - 1) * s >= i + p:
            n -= 1
        out.append(n)
    return out


def _conv_operands(a: dict[str, Any], spatial: int) -> bool | None:
    """Whether a conv's input is batched, or None when input, weight or bias are not plain
    tensors (contiguous or channels-last) of the expected ranks on one device (then
    torch's kernel runs)."""
    x, w, b = a.get("input"), a.get("weight"), a.get("bias")
    batched = _batched(x, spatial) if _plain(x, channels_last=True) else None
    if batched is None or not _plain(w, x, channels_last=True) or w.dim() != spatial + 2 or \
            not (b is None or _plain(b, x)):
        return None
    return batched


def _conv_output(shape: tuple[int, ...], a: dict[str, Any]) -> torch.Tensor:
    """A conv's output is channels-last when its input or weight is (the CPU and CUDA
    kernels' rule; torch's meta kernel returns contiguous maps)."""
    x, w = a["input"], a["weight"]
    if len(shape) in _CHANNELS_LAST and (_channels_last(x) or _channels_last(w)):
        return torch.empty(shape, dtype=x.dtype, device=x.device,
                           memory_format=_CHANNELS_LAST[len(shape)])
    return empty(shape, x)


def conv(spatial: int) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        x, w = a.get("input"), a.get("weight")
        batched = _conv_operands(a, spatial)
        if batched is None:
            return None
        groups = a.get("groups", 1)
        stride, dilation = _ints(a.get("stride", 1), spatial), _ints(a.get("dilation", 1), spatial)
        padding = a.get("padding", 0)
        if not isinstance(groups, int) or stride is None or dilation is None:
            return None
        channels = x.shape[1 if batched else 0]
        if w.shape[1] * groups != channels:
            full = list(x.shape) if batched else [1, *x.shape]
            raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected "
                               f"input{full} to have {w.shape[1] * groups} channels, but got "
                               f"{channels} channels instead")
        kernel = tuple(w.shape[2:])
        sizes = x.shape[-spatial:]
        if padding == "same":
            if any(s != 1 for s in stride):
                return None
            out = list(sizes)
        else:
            padding = (0,) * spatial if padding == "valid" else _ints(padding, spatial)
            if padding is None:
                return None
            padded = [i + 2 * p for i, p in zip(sizes, padding)]
            footprint = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
            if any(p < f for p, f in zip(padded, footprint)):
                raise RuntimeError(
                    f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
                    f"Kernel size: ({' x '.join(map(str, footprint))}). "
                    "Kernel size can't be greater than actual input size")
            out = _window_sizes(sizes, kernel, stride, padding, dilation)
        lead = (x.shape[0], w.shape[0]) if batched else (w.shape[0],)
        return _conv_output((*lead, *out), a)
    return shape


def conv_transpose(spatial: int) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        x, w = a.get("input"), a.get("weight")
        batched = _conv_operands(a, spatial)
        if batched is None:
            return None
        groups = a.get("groups", 1)
        stride = _ints(a.get("stride", 1), spatial)
        padding = _ints(a.get("padding", 0), spatial)
        extra = _ints(a.get("output_padding", 0), spatial)
        dilation = _ints(a.get("dilation", 1), spatial)
        if not isinstance(groups, int) or None in (stride, padding, extra, dilation):
            return None
        if x.shape[1 if batched else 0] != w.shape[0]:
            return None  # let torch word the error
        out = [(i - 1) * s - 2 * p + d * (k - 1) + e + 1 for i, s, p, d, k, e in
               zip(x.shape[-spatial:], stride, padding, dilation, w.shape[2:], extra)]
        if any(o <= 0 for o in out):
            return None
        lead = (x.shape[0], w.shape[1] * groups) if batched else (w.shape[1] * groups,)
        return _conv_output((*lead, *out), a)
    return shape


def pool(spatial: int, with_dilation: bool) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        x = a.get("input")
        if not _plain(x) or _batched(x, spatial) is None or a.get("return_indices"):
            return None
        kernel = _ints(a.get("kernel_size"), spatial)
        stride = a.get("stride")
        stride = kernel if stride in (None, (), []) else _ints(stride, spatial)
        padding = _ints(a.get("padding", 0), spatial)
        dilation = _ints(a.get("dilation", 1), spatial) if with_dilation else (1,) * spatial
        if None in (kernel, stride, padding, dilation) or \
                any(2 * p > k for p, k in zip(padding, kernel)):
            return None  # torch words the padding error
        sizes = x.shape[-spatial:]
        out = _window_sizes(sizes, kernel, stride, padding, dilation, bool(a.get("ceil_mode")))
        if any(o <= 0 for o in out):
            raise RuntimeError(f"Given input size: ({'x'.join(map(str, x.shape[-spatial - 1:]))}). "
                               f"Calculated output size: ({'x'.join(map(str, [x.shape[-spatial - 1], *out]))}). "
                               "Output size is too small")
        return empty((*x.shape[:-spatial], *out), x)
    return shape


def adaptive(spatial: int) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        x, size = a.get("input"), a.get("output_size")
        if not _plain(x) or _batched(x, spatial) is None or a.get("return_indices"):
            return None
        if isinstance(size, int) or size is None:
            size = (size,) * spatial
        if not isinstance(size, (list, tuple)) or len(size) != spatial or \
                not all(s is None or (isinstance(s, int) and s > 0) for s in size):
            return None
        if any(i == 0 for i in x.shape[-spatial:]):
            return None
        out = [i if s is None else s for i, s in zip(x.shape[-spatial:], size)]
        return empty((*x.shape[:-spatial], *out), x)
    return shape


def linear(a: dict[str, Any]):
    x, w, b = a.get("input"), a.get("weight"), a.get("bias")
    if not _plain(x) or not _plain(w, x) or w.dim() != 2 or x.dim() < 1:
        return None
    if b is not None and not _plain(b, x):
        return None
    if x.shape[-1] != w.shape[1]:
        return None  # torch words the error
    return empty((*x.shape[:-1], w.shape[0]), x)


def _broadcast(shapes: list[Shape]) -> Shape | None:
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}


def binary(op: str) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        operands = a["operands"]
        tensors = [t for t in operands if isinstance(t, torch.Tensor)]
        if not tensors or len(operands) != 2 or a.get("kwargs") or \
                not all(isinstance(t, (torch.Tensor, int, float, bool)) for t in operands):
            return None
        if any(t.requires_grad or not (t.is_contiguous() or 0 in t.stride()) for t in tensors):
            return None
        if any(t.device != tensors[0].device and t.dim() for t in tensors):
            return None  # torch raises for mixed devices (a CPU constant against meta)
        out = _broadcast([tuple(t.shape) for t in tensors])
        if out is None:
            return None
        first = tensors[0]
        dtype = torch.bool if op in COMPARISONS else torch.result_type(*operands)
        if op in ("div", "truediv") and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
        return empty(out, first, dtype)
    return shape


def cat(stack: bool) -> ShapeFunction:
    def shape(a: dict[str, Any]):
        tensors, dim = a.get("tensors"), a.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int) \
                or not all(_plain(t, tensors[0]) for t in tensors):
            return None
        first = tensors[0]
        if any(t.dtype != first.dtype or t.dim() != first.dim() for t in tensors):
            return None
        ndim = first.dim() + (1 if stack else 0)
        if not -ndim <= dim < ndim:
            return None
        dim %= ndim
        if stack:
            if any(t.shape != first.shape for t in tensors):
                return None
            return empty((*first.shape[:dim], len(tensors), *first.shape[dim:]), first)
        if first.dim() == 0 or any(t.shape[:dim] + t.shape[dim + 1:] !=
                                   first.shape[:dim] + first.shape[dim + 1:] for t in tensors):
            return None
        size = sum(t.shape[dim] for t in tensors)
        return empty((*first.shape[:dim], size, *first.shape[dim + 1:]), first)
    return shape


def reduce(a: dict[str, Any]):
    """sum/amax/amin/mean over ``dim`` (all dims when None) of a floating tensor."""
    x, dim, keepdim = a.get("input"), a.get("dim"), a.get("keepdim", False)
    if not _plain(x) or x.dim() == 0 or not x.dtype.is_floating_point \
            or set(a) - {"input", "dim", "keepdim"}:
        return None
    if dim is None:
        dim = list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim) if isinstance(dim, (list, tuple)) else None
    if not dims or not all(isinstance(d, int) and -x.dim() <= d < x.dim() for d in dims):
        return None
    dims = {d % x.dim() for d in dims}
    out = [1 if d in dims else s for d, s in enumerate(x.shape) if keepdim or d not in dims]
    return empty(out, x)


def softmax(a: dict[str, Any]):
    x, dim = a.get("input"), a.get("dim")
    if not _plain(x) or not isinstance(dim, int) or a.get("dtype") is not None \
            or set(a) - {"input", "dim", "dtype", "_stacklevel"} \
            or not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return None
    return empty_like(x)


def layer_norm(a: dict[str, Any]):
    """``F.layer_norm``: the input's trailing dims must be ``normalized_shape``."""
    return _trailing_norm(a, "*, ")


def rms_norm(a: dict[str, Any]):
    """``F.rms_norm``: as ``layer_norm`` (torch words its error a little differently)."""
    return _trailing_norm(a, "*")


def _trailing_norm(a: dict[str, Any], star: str):
    x, normalized = a.get("input"), a.get("normalized_shape")
    if isinstance(normalized, int):
        normalized = (normalized,)
    if not isinstance(x, torch.Tensor) or not isinstance(normalized, (list, tuple)) \
            or not normalized or not all(isinstance(n, int) for n in normalized):
        return None
    if len(normalized) > x.dim() or tuple(x.shape[-len(normalized):]) != tuple(normalized):
        expected = star + ", ".join(str(n) for n in normalized)
        raise RuntimeError(f"Given normalized_shape={list(normalized)}, expected input with "
                           f"shape [{expected}], but got input of size{list(x.shape)}")
    return empty(x.shape, x)  # these kernels return contiguous output


def _values_per_channel(size) -> None:
    """torch's check for norms over batch statistics: more than one value per channel."""
    if math.prod([size[0], *size[2:]]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {size}")


def batch_norm(a: dict[str, Any]):
    """``F.batch_norm``: with batch statistics, more than one value per channel."""
    x = a.get("input")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return None
    if a.get("training", False):
        _values_per_channel(x.shape)
    return empty_like(x)


def group_norm(a: dict[str, Any]):
    """``F.group_norm``: more than one value per group."""
    x, groups = a.get("input"), a.get("num_groups")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not isinstance(groups, int) \
            or groups <= 0 or x.shape[1] % groups:
        return None
    _values_per_channel([x.shape[0] * x.shape[1] // groups, groups, *x.shape[2:]])
    return empty_like(x)


def instance_norm(a: dict[str, Any]):
    """``F.instance_norm``: statistics of each map need more than one position."""
    x = a.get("input")
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return None
    if a.get("use_input_stats", True) and math.prod(x.shape[2:]) == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input "
                         f"size {x.shape}")
    return empty(x.shape, x)  # contiguous, as the kernel returns it


_INTERPOLATE_DIMS = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "area": (1, 2, 3),
                     "linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}


def interpolate(a: dict[str, Any]):
    """``F.interpolate``: ``size``, else ``floor(in * scale_factor)`` per spatial axis."""
    x, size, scale = a.get("input"), a.get("size"), a.get("scale_factor")
    mode = a.get("mode", "nearest")
    if not _plain(x) or x.dim() < 3 or (size is None) == (scale is None) or a.get("antialias"):
        return None
    spatial = x.dim() - 2
    if spatial not in _INTERPOLATE_DIMS.get(mode, ()):
        return None
    if size is not None:
        out = _ints(size, spatial)
    elif isinstance(scale, (int, float)) or (isinstance(scale, (list, tuple)) and
                                              all(isinstance(f, (int, float)) for f in scale)):
        factors = [scale] * spatial if isinstance(scale, (int, float)) else list(scale)
        if len(factors) != spatial:
            return None
        out = [int(float(i) * float(f)) for i, f in zip(x.shape[2:], factors)]
    else:
        return None
    if out is None or any(o <= 0 for o in out):
        return None
    return empty((*x.shape[:2], *out), x)
