"""Geometry handlers: how one op call moves spatial positions (its window or resampling).

Each handler turns a normalised :class:`Call` into an :class:`Effect` (kind, where the
spatial axes are, the window). The op registry (:mod:`rfalint.ops`) says which handler
each op and leaf module uses, like fvcore's ``_DEFAULT_SUPPORTED_OPS``; an op the registry
does not know becomes ``Kind.UNKNOWN`` and a finding, never a silent 1x1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

from rfalint.graph import Kind, Resample, Window


@dataclass
class TensorInfo:
    """A graph tensor as a handler sees it: its shape and where its spatial axes live."""

    shape: tuple[int, ...]
    layout: tuple[int, ...] | None


@dataclass
class Call:
    """One op invocation, normalised: graph inputs, bound non-tensor args, output shapes."""

    op: str
    inputs: list[TensorInfo]  # graph tensors only, in argument order
    args: dict[str, Any]
    out_shapes: list[tuple[int, ...]]

    @property
    def main(self) -> TensorInfo:
        return self.inputs[0]


@dataclass
class Effect:
    """What a handler decides about a call."""

    kind: Kind
    layout: tuple[int, ...] | None
    geometry: Window | Resample | None = None
    gates: tuple[int, ...] = ()
    note: str = ""


Handler = Callable[[Call], Effect]


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n > 1:
            return tuple(int(value[0]) for _ in range(n))
        return tuple(int(v) for v in value)
    return tuple(int(value) for _ in range(n))


def _norm_dim(dim: int, ndim: int) -> int:
    return dim % ndim if ndim else 0


def _dims(value: Any, ndim: int) -> list[int] | None:
    """Normalise a ``dim`` argument to a sorted list, or None for 'all dims'."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return sorted(_norm_dim(int(d), ndim) for d in value)
    return [_norm_dim(int(value), ndim)]


def nonspatial(call: Call) -> Effect:
    return Effect(Kind.NONSPATIAL, None)


def unknown(call: Call, why: str) -> Effect:
    """Keep the spatial layout when the shape says positions survive, and flag the op."""
    main = call.main
    out = call.out_shapes[0] if call.out_shapes else ()
    keep = main.layout is not None and len(out) == len(main.shape)
    return Effect(Kind.UNKNOWN, main.layout if keep else None, note=why)


# --------------------------------------------------------------------------- pointwise


def pointwise(call: Call) -> Effect:
    """Per-position ops: the output keeps the input's layout."""
    return Effect(Kind.POINTWISE, call.main.layout)


def merge(call: Call) -> Effect:
    """Elementwise combination of several graph tensors (add, mul, where, ...).

    Operands without spatial axes, or broadcast over space (size 1 where the output is
    larger), are gates: multipliers from a global pool (SE, attention). They are
    excluded from spatial RF propagation, as the papers prescribe.
    """
    out = call.out_shapes[0]
    spatial = [i for i, t in enumerate(call.inputs) if _is_full_spatial(t, out)]
    if not spatial:
        if any(t.layout is not None for t in call.inputs):
            return unknown(call, "broadcast over space between spatial operands")
        return nonspatial(call)
    gates = tuple(i for i in range(len(call.inputs)) if i not in spatial)
    layout = _aligned_layout(call.inputs[spatial[0]], out)
    kind = Kind.MERGE if len(spatial) > 1 else Kind.POINTWISE
    return Effect(kind, layout, gates=gates)


def _is_full_spatial(t: TensorInfo, out: tuple[int, ...]) -> bool:
    if t.layout is None:
        return False
    layout = _aligned_layout(t, out)
    return all(t.shape[d - (len(out) - len(t.shape))] == out[d] for d in layout)


def _aligned_layout(t: TensorInfo, out: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcasting aligns trailing dims; shift the layout if the output has more dims."""
    shift = len(out) - len(t.shape)
    return tuple(d + shift for d in t.layout)


def reduce_(call: Call) -> Effect:
    """mean/sum/amax/... over ``dim``: global when every spatial axis is reduced."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    ndim = len(main.shape)
    dims = _dims(call.args.get("dim"), ndim)
    if dims is None:
        return Effect(Kind.GLOBAL, None)
    hit = [d for d in dims if d in main.layout]
    if len(hit) == len(main.layout):
        return Effect(Kind.GLOBAL, None)
    if hit:
        return unknown(call, f"reduction over only some spatial axes (dim={dims})")
    if call.args.get("keepdim", False):
        return Effect(Kind.POINTWISE, main.layout)
    return Effect(Kind.POINTWISE, tuple(d - sum(1 for r in dims if r < d) for d in main.layout))


def _along(call: Call, dim: int | None, what: str) -> Effect:
    """An op along one dim: per position while that dim is not spatial."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    if dim is not None and _norm_dim(int(dim), len(main.shape)) in main.layout:
        return unknown(call, f"{what} across a spatial axis (dim={dim})")
    return Effect(Kind.POINTWISE, main.layout)


def softmax(call: Call) -> Effect:
    return _along(call, call.args.get("dim"), "softmax")


def normalize(call: Call) -> Effect:
    """F.normalize over a channel dim is per position."""
    return _along(call, call.args.get("dim", 1), "normalisation")


def layer_norm(call: Call) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    shape = call.args.get("normalized_shape") or ()
    n = len(shape) if isinstance(shape, (list, tuple)) else 1
    normed = range(len(main.shape) - n, len(main.shape))
    if any(d in main.layout for d in normed):
        # Statistics over the whole map, then a per-position affine: treated as pointwise,
        # the convention the papers use for normalisation.
        return Effect(Kind.POINTWISE, main.layout, note="layer norm over spatial axes")
    return Effect(Kind.POINTWISE, main.layout)


# --------------------------------------------------------------------------- windows


def _window_effect(call: Call, kind: Kind, kernel, stride, padding, dilation, groups=1,
                   transposed=False) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    n = len(main.layout)
    if isinstance(padding, str):
        k = _tuple(kernel, n)
        d = _tuple(dilation, n)
        padding = tuple((di * (ki - 1)) // 2 if padding == "same" else 0 for ki, di in zip(k, d))
    window = Window(
        kernel=_tuple(kernel, n),
        stride=_tuple(stride if stride not in (None, (), []) else kernel, n),
        padding=_tuple(padding, n),
        dilation=_tuple(dilation, n),
        groups=int(groups),
        transposed=transposed,
    )
    return Effect(kind, main.layout, geometry=window)


def conv(call: Call) -> Effect:
    a = call.args
    return _window_effect(call, Kind.CONV, a["kernel_size"], a.get("stride", 1),
                          a.get("padding", 0), a.get("dilation", 1), a.get("groups", 1))


def conv_transpose(call: Call) -> Effect:
    a = call.args
    return _window_effect(call, Kind.CONV, a["kernel_size"], a.get("stride", 1),
                          a.get("padding", 0), a.get("dilation", 1), a.get("groups", 1),
                          transposed=True)


def max_pool(call: Call) -> Effect:
    a = call.args
    return _window_effect(call, Kind.POOL, a["kernel_size"], a.get("stride"),
                          a.get("padding", 0), a.get("dilation", 1))


def avg_pool(call: Call) -> Effect:
    a = call.args
    return _window_effect(call, Kind.POOL, a["kernel_size"], a.get("stride"),
                          a.get("padding", 0), 1)


def pixel_unshuffle(call: Call) -> Effect:
    f = int(call.args["downscale_factor"])
    return _window_effect(call, Kind.POOL, f, f, 0, 1)


def adaptive_pool(call: Call) -> Effect:
    """Adaptive pooling to 1 is the readout; otherwise it is a window when sizes divide."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    out = call.out_shapes[0]
    sizes_in = [main.shape[d] for d in main.layout]
    sizes_out = [out[d] for d in main.layout]
    if all(o == 1 for o in sizes_out):
        return Effect(Kind.GLOBAL, None)
    if any(o > i for i, o in zip(sizes_in, sizes_out)):
        return unknown(call, f"adaptive pooling to a larger map ({sizes_in} -> {sizes_out})")
    kernels, strides = [], []
    for i, o in zip(sizes_in, sizes_out):
        # PyTorch windows: [floor(k*i/o), ceil((k+1)*i/o)); the largest is the kernel.
        kernels.append(max(math.ceil((k + 1) * i / o) - (k * i) // o for k in range(o)))
        strides.append(max(1, i // o))
    exact = all(i % o == 0 for i, o in zip(sizes_in, sizes_out))
    effect = _window_effect(call, Kind.POOL, kernels, strides, 0, 1)
    if not exact:
        effect.note = "adaptive pool with uneven windows: kernel is the largest window"
        effect.geometry.exact = False  # window starts drift per unit: offsets unknown
    return effect


_INTERP_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2,
                "bicubic": 4, "area": None}


def interpolate(call: Call) -> Effect:
    """Upsampling divides the jump; exact integer downsampling is a window (area: a pool).

    Downsampling by an integer f with ``align_corners=False`` samples source position
    ``(u + 0.5) * f - 0.5``: the window starts there (rounded down) and reads 1 tap where
    that is a whole pixel, else the mode's taps (see docs/method.md §4).
    """
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    out = call.out_shapes[0]
    mode = call.args.get("mode") or ("bilinear" if call.op == "upsample_bilinear" else "nearest")
    align_corners = bool(call.args.get("align_corners") or call.op == "upsample_bilinear")
    if mode not in _INTERP_TAPS:
        return unknown(call, f"interpolate mode {mode!r}")
    scale = tuple(Fraction(out[d], main.shape[d]) for d in main.layout)
    if mode == "area" or any(s < 1 for s in scale):
        factors = [1 / s for s in scale]
        if any(s > 1 for s in scale) or any(f.denominator != 1 for f in factors):
            shown = ", ".join(str(f) for f in scale)
            return unknown(call, f"interpolate by non-integer or mixed factors ({shown}, {mode!r})")
        strides = [int(f) for f in factors]
        if mode == "area":
            return _window_effect(call, Kind.POOL, strides, strides, 0, 1)
        taps, lead = zip(*(_downsampling_taps(mode, f) for f in strides))
        effect = _window_effect(call, Kind.POOL, taps, strides, lead, 1)
        effect.geometry.exact = not (align_corners and mode not in ("nearest", "nearest-exact"))
        return effect
    taps = tuple(_INTERP_TAPS[mode] if s != 1 else 1 for s in scale)
    return Effect(Kind.RESAMPLE, main.layout,
                  geometry=Resample(scale, taps, mode, align_corners and "nearest" not in mode))


def _downsampling_taps(mode: str, factor: int) -> tuple[int, int]:
    """(taps, leading padding) of resizing down by an integer ``factor``."""
    if factor == 1:
        return 1, 0
    if mode == "nearest":
        return 1, 0  # source floor(u * f)
    if mode == "nearest-exact":
        return 1, -(factor // 2)  # source floor((u + 0.5) * f)
    centre = Fraction(factor - 1, 2)  # source (u + 0.5) * f - 0.5 = u * f + centre
    if centre.denominator == 1:
        return 1, -int(centre)  # a whole pixel: the other taps weigh 0
    first = math.floor(centre) - (1 if mode == "bicubic" else 0)
    return _INTERP_TAPS[mode], -first


def pixel_shuffle(call: Call) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    r = int(call.args["upscale_factor"])
    n = len(main.layout)
    return Effect(Kind.RESAMPLE, main.layout,
                  geometry=Resample((Fraction(r),) * n, (1,) * n, "pixel_shuffle"))


# --------------------------------------------------------------------------- shape ops


def flatten(call: Call) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    ndim = len(main.shape)
    start = _norm_dim(int(call.args.get("start_dim", 0)), ndim)
    end = _norm_dim(int(call.args.get("end_dim", -1)), ndim)
    if any(start <= d <= end for d in main.layout) and end > start:
        if all(d in main.layout for d in range(start, end + 1)):
            # (N, C, H, W) -> (N, C, H*W): positions become tokens (vision transformers)
            return Effect(Kind.UNKNOWN, None, note="spatial axes flattened into a token axis")
        return Effect(Kind.GLOBAL, None)
    removed = max(0, end - start)
    return Effect(Kind.POINTWISE, tuple(d - removed if d > end else d for d in main.layout))


def reshape(call: Call) -> Effect:
    """view/reshape: fine while the spatial dims stay trailing and unchanged."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    out = call.out_shapes[0]
    sizes = [main.shape[d] for d in main.layout]
    tail_in = len(main.shape) - main.layout[0]
    if main.layout == tuple(range(len(main.shape) - len(sizes), len(main.shape))) and \
            len(out) >= len(sizes) and list(out[len(out) - len(sizes):]) == sizes \
            and out[0] == main.shape[0] and tail_in == len(sizes):
        return Effect(Kind.POINTWISE, tuple(range(len(out) - len(sizes), len(out))))
    if len(out) == 2 and out[0] == main.shape[0]:
        return Effect(Kind.GLOBAL, None)
    return unknown(call, f"reshape {tuple(main.shape)} -> {tuple(out)} moves spatial axes")


def permute(call: Call) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    ndim = len(main.shape)
    order = [_norm_dim(int(d), ndim) for d in call.args["dims"]]
    return Effect(Kind.POINTWISE, tuple(order.index(d) for d in main.layout))


def transpose(call: Call) -> Effect:
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    ndim = len(main.shape)
    a = _norm_dim(int(call.args["dim0"]), ndim)
    b = _norm_dim(int(call.args["dim1"]), ndim)
    swap = {a: b, b: a}
    return Effect(Kind.POINTWISE, tuple(swap.get(d, d) for d in main.layout))


def squeeze_like(call: Call) -> Effect:
    """squeeze/unsqueeze/getitem: track which input dims survive by matching sizes."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    out = call.out_shapes[0]
    layout = _match_layout(main, out, call)
    if layout is None:
        return unknown(call, f"indexing {tuple(main.shape)} -> {tuple(out)} drops spatial axes")
    return Effect(Kind.POINTWISE, layout)


def _match_layout(main: TensorInfo, out: tuple[int, ...], call: Call) -> tuple[int, ...] | None:
    """Map spatial dims through an op that only adds or removes dims or crops them."""
    delta = len(out) - len(main.shape)
    if call.op == "unsqueeze":
        dim = _norm_dim(int(call.args.get("dim", 0)), len(out))
        return tuple(d + 1 if d >= dim else d for d in main.layout)
    if call.op == "squeeze":
        dims = _dims(call.args.get("dim"), len(main.shape))
        gone = [d for d in range(len(main.shape)) if main.shape[d] == 1 and
                (dims is None or d in dims)]
        if any(d in main.layout for d in gone):
            return None
        return tuple(d - sum(1 for g in gone if g < d) for d in main.layout)
    if delta == 0:
        return main.layout  # slicing keeps dims (channel slices, crops)
    return None


def getitem(call: Call) -> Effect:
    """Slicing: ``x[..., 1::2, ::2]`` samples every 2nd position from offset 1 (a 1-tap
    window of stride 2 with leading padding -1, as in YOLO's Focus stem); a crop
    ``x[..., 2:-2]`` is a 1-tap window of stride 1 that shifts positions by 2. Other
    indexing (ints, None, tensors) goes through :func:`squeeze_like`."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    index = call.args.get("index")
    slices = _slice_parts(index, len(main.shape))
    if slices is None:
        return squeeze_like(call)
    if not slices:
        return unknown(call, f"slice bounds that are not integers ({index!r})")
    starts, strides = [], []
    for d in main.layout:
        start, _, step = slices[d].indices(main.shape[d])
        starts.append(start)
        strides.append(step)
    if any(s < 1 for s in strides):
        return unknown(call, "slice with a negative step reverses a spatial axis")
    kind = Kind.POINTWISE if all(s == 1 for s in strides) else Kind.POOL
    if kind is Kind.POINTWISE and not any(starts):
        return Effect(kind, main.layout)
    effect = _window_effect(call, Kind.POOL, 1, strides, [-s for s in starts], 1)
    effect.kind = kind
    return effect


def _slice_parts(index: Any, ndim: int) -> list[slice] | None:
    """The slice per dim for an index made only of slices and one Ellipsis, else None;
    an empty list when such an index has bounds that are not integers (tensors)."""
    parts = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(p, slice) or p is Ellipsis for p in parts) or \
            sum(p is Ellipsis for p in parts) > 1:
        return None
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        parts = parts[:at] + (slice(None),) * (ndim - len(parts) + 1) + parts[at + 1:]
    parts = parts + (slice(None),) * (ndim - len(parts))
    try:
        return [slice(*(None if v is None else int(v) for v in (p.start, p.stop, p.step)))
                for p in parts]
    except (TypeError, ValueError, RuntimeError):
        return []


def cat(call: Call) -> Effect:
    out = call.out_shapes[0]
    spatial = [i for i, t in enumerate(call.inputs) if t.layout is not None]
    if not spatial:
        return nonspatial(call)
    ref = call.inputs[spatial[0]]
    dim = _norm_dim(int(call.args.get("dim", 0)), len(out))
    if call.op == "stack":
        # a new branch axis at ``dim``: spatial dims at or after it move one up
        layout = tuple(d + 1 if d >= dim else d for d in ref.layout)
        if any(t.layout is None or tuple(t.shape[d] for d in t.layout) !=
               tuple(out[d] for d in layout) for t in call.inputs):
            return unknown(call, "stack of tensors with different spatial sizes")
        kind = Kind.MERGE if len(call.inputs) > 1 else Kind.POINTWISE
        return Effect(kind, layout)
    if dim in ref.layout:
        return unknown(call, f"concatenation along spatial dim {dim}")
    full = [i for i in spatial if _is_full_spatial(call.inputs[i], out)]
    gates = tuple(i for i in range(len(call.inputs)) if i not in full)
    kind = Kind.MERGE if len(full) > 1 else Kind.POINTWISE
    return Effect(kind, ref.layout, gates=gates)


def _pieces(call: Call, what: str, keeps_dim: bool) -> Effect:
    """Pieces along a branch or channel axis: every output keeps the positions."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    dim = _norm_dim(int(call.args.get("dim", 0)), len(main.shape))
    if dim in main.layout:
        return unknown(call, f"{what} along spatial dim {dim}")
    if keeps_dim:
        return Effect(Kind.POINTWISE, main.layout)
    return Effect(Kind.POINTWISE, tuple(d - 1 if d > dim else d for d in main.layout))


def unbind(call: Call) -> Effect:
    return _pieces(call, "unbind", keeps_dim=False)


def split(call: Call) -> Effect:
    """``split``, ``chunk`` and ``tensor_split``."""
    return _pieces(call, "split", keeps_dim=True)


def pad(call: Call) -> Effect:
    """``F.pad`` and the pad modules read one input per output but shift positions: a
    1-tap window whose padding is the leading pad of each spatial axis (negative pads
    crop). ``pad`` lists (leading, trailing) pairs from the last dim backwards."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    pads = call.args.get("pad")
    if pads is None:
        return unknown(call, "padding amounts unknown")
    pads = [int(p) for p in pads]
    ndim = len(main.shape)
    lead = []
    for d in main.layout:
        k = ndim - 1 - d
        lead.append(pads[2 * k] if 2 * k < len(pads) else 0)
    if not any(lead):
        return Effect(Kind.POINTWISE, main.layout)
    return _window_effect(call, Kind.POINTWISE, 1, 1, lead, 1)


def linear(call: Call) -> Effect:
    """A Linear over channels-last maps is a 1x1 conv; over a spatial axis it mixes it all."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    if len(main.shape) - 1 in main.layout:
        return unknown(call, "linear layer applied across a spatial axis")
    n = len(main.layout)
    return Effect(Kind.CONV, main.layout, geometry=Window((1,) * n, (1,) * n, (0,) * n, (1,) * n))


def global_mixing(call: Call) -> Effect:
    """matmul/attention on feature maps: every position can read every other."""
    if all(t.layout is None for t in call.inputs):
        return nonspatial(call)
    return unknown(call, f"{call.op} mixes positions (attention-like)")


def expand(call: Call) -> Effect:
    """expand/repeat of a spatial map keeps its layout; of a gate vector it stays non-spatial."""
    main = call.main
    if main.layout is None:
        return nonspatial(call)
    out = call.out_shapes[0]
    if len(out) == len(main.shape) and all(main.shape[d] == out[d] for d in main.layout):
        return Effect(Kind.POINTWISE, main.layout)
    if len(out) == len(main.shape) and all(main.shape[d] == 1 for d in main.layout):
        return Effect(Kind.NONSPATIAL, None, note="broadcast of a 1x1 map")
    return unknown(call, f"{call.op} changes the spatial size")
