"""Gradient-support receptive-field oracle, independent of ``rfalint``.

Method
------
The receptive field of a unit is the set of input positions that can influence it.  For
a network whose every path is "monotone" this is exactly the support (set of non-zero
entries) of the gradient of that unit with respect to the input.  We make every path
monotone and every unit active on a *copy* of the model:

* float64, ``eval()`` mode (dropout off, BatchNorm uses running statistics);
* every weight tensor (``dim >= 2``) drawn from uniform(0.1, 1) and divided by its
  fan-in, so values stay O(1) through hundreds of layers; every 1-D parameter
  (BatchNorm / LayerNorm affine weight, layer-scale, ...) from uniform(0.5, 1); every
  parameter whose name ends in ``bias`` set to 0;
* BatchNorm ``running_mean = 0``, ``running_var = 1``;
* GroupNorm / InstanceNorm (data-dependent spatial statistics would spread the gradient
  over the whole image) replaced by ``nn.Identity``;
* every ``nn.MaxPool{1,2,3}d`` swapped for average pooling with the same kernel, stride,
  padding, dilation and ceil mode, ``nn.AdaptiveMaxPool*`` for ``nn.AdaptiveAvgPool*``,
  and, while the forward pass runs, ``torch.nn.functional.max_pool{1,2,3}d`` /
  ``adaptive_max_pool{1,2,3}d`` are patched the same way (a max only routes the
  gradient to the arg-max; an average routes it to the whole window);
* gates detached (``detach_gates=True``, the default): while the forward pass runs, the
  outputs of sigmoid and hard-sigmoid (``torch.sigmoid``, ``F.sigmoid``,
  ``F.hardsigmoid``, ``Tensor.sigmoid``, ``nn.Sigmoid``, ``nn.Hardsigmoid``) and of
  softmax (``torch.softmax``, ``F.softmax``, ``Tensor.softmax``, ``nn.Softmax``) are
  ``.detach()``-ed, see "Gates" below;
* input: a tiny positive tensor (1e-3 + 1e-4 * uniform noise), so every pre-activation
  is positive and small: ReLU / ReLU6 / SiLU / sigmoid all pass a non-zero gradient and
  nothing saturates.

With all weights positive no two paths can cancel, so the gradient of the chosen output
unit is non-zero exactly on the union of the receptive fields of all its paths, i.e.
on the ``r_max`` field.  The *output unit* is the centre position (index ``(n - 1) // 2``
on every spatial axis) of the chosen tensor, summed over all channels (or one channel,
``channel=c``).  The tensor is the output of the sub-module ``module_name`` (forward
hook; the forward pass is stopped right there, so classifiers that only fit other input
sizes never run), or the model output (``output_key`` selects from a dict / tuple).

The *extent* per spatial axis is ``max index - min index + 1`` of the non-zero gradient.
It equals the theoretical RF only when the field is not clipped by the input border, so
by default :func:`gradient_rf` raises :class:`ClippedError` when the support touches the
border; :func:`smallest_unclipped_shape` grows the input until it does not and
:func:`gradient_rf_auto` does both.  :func:`gradient_support_many` measures several
modules from one forward pass, on their outputs or (``io="input"``) their inputs, i.e.
the ``r_{l-1}`` of the border rule.

Gates
-----
rfalint excludes gating branches from the RF by default (docs/method.md §3): the weights
a sigmoid or a softmax computes from a branch of its own (squeeze-and-excitation, CBAM,
BAM, attention U-Net, selective-kernel and split-attention weights) rescale a feature map
but do not carry its positions. The oracle follows the same convention by detaching
every sigmoid / softmax output: ``x * gate`` then passes the gradient through ``x`` only
(the gate's value stays positive, so nothing is lost), and whatever computed the gate,
a global pool included, drops out of the support. ``x * sigmoid(x)`` (swish written out)
is unaffected: the gradient still flows through the ``x`` factor, which has the same
field. A sigmoid or softmax that is *not* a gate (e.g. a final sigmoid producing the
output) must not be measured with detached gates: its gradient would be zero. With
``detach_gates=False`` the oracle measures the literal support over every path: after a
gate that contains a global pool it is the whole input.

Where a field lies: :func:`gradient_supports_at` measures the support of any units
(``"centre"`` or an index per spatial axis, negative from the end) of several modules
from one forward pass.  ``Support.lo`` of an unclipped unit u is the start of its field,
``u * S - P`` for effective stride S and effective padding P; for unit 0 it is
``max(0, -P)`` (the field starts in the padding, which has no gradient).

Limitations and things to know:

* ``r_min`` is not a gradient-support quantity (except per channel right after a
  concatenation, see ``channel``);
* the extent is that of the *union* of all path fields; it equals ``r_max`` when the
  path fields are concentric (all reference nets), but can exceed it when paths are
  offset against each other (e.g. even kernels or asymmetric padding on one branch);
* bilinear up-sampling mixes two neighbours, so it really widens the field (by the
  input jump for x2); nearest up-sampling and ``ConvTranspose2d(k=2, s=2)`` do not.

Run ``python tests/oracle.py`` to execute the examples below.

Example
-------
>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=2, dilation=2), nn.ReLU(),
...                     nn.Conv2d(8, 8, 3, padding=1))
>>> gradient_rf(net, (3, 15, 15), module_name="0")
(5, 5)
>>> gradient_rf(net, (3, 15, 15))
(7, 7)
>>> smallest_unclipped_shape(net, (3, 1, 1))
(3, 9, 9)
>>> gradient_rf(nn.Conv2d(1, 1, (1, 7)), (1, 9, 9))
(1, 7)
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ClippedError",
    "Support",
    "prepare_model",
    "gradient_support",
    "gradient_support_many",
    "gradient_supports_at",
    "gradient_rf",
    "smallest_unclipped_shape",
    "gradient_rf_auto",
]


class ClippedError(RuntimeError):
    """The gradient support touches the input border: the RF may be clipped."""


class _Stop(Exception):
    """Raised from a forward hook to end the forward pass early."""


@dataclass(frozen=True)
class Support:
    """Gradient support of one output unit.

    ``lo``/``hi``: min / max input index with non-zero gradient per spatial axis;
    ``size``: spatial input size; ``extent`` = ``hi - lo + 1``.
    """

    lo: Tuple[int, ...]
    hi: Tuple[int, ...]
    size: Tuple[int, ...]

    @property
    def extent(self) -> Tuple[int, ...]:
        return tuple(h - l + 1 for l, h in zip(self.lo, self.hi))

    def touches_border(self, margin: int = 0) -> Tuple[bool, ...]:
        """Per axis: support within ``margin`` pixels of either input border."""
        return tuple(l <= margin or h >= n - 1 - margin
                     for l, h, n in zip(self.lo, self.hi, self.size))

    @property
    def clipped(self) -> bool:
        return any(self.touches_border())


# --------------------------------------------------------------------------- model prep
class _AvgPoolLike(nn.Module):
    """Average pooling with the geometry of a max-pool (kernel/stride/padding/dilation)."""

    def __init__(self, nd, kernel_size, stride, padding, dilation, ceil_mode):
        super().__init__()
        self.nd = nd
        self.k = _tup(kernel_size, nd)
        self.s = _tup(stride if stride is not None else kernel_size, nd)
        self.p = _tup(padding, nd)
        self.d = _tup(dilation, nd)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x):
        return _avg_like(x, self.nd, self.k, self.s, self.p, self.d, self.ceil_mode)


def _tup(v, nd):
    if isinstance(v, (tuple, list)):
        return tuple(int(a) for a in v)
    return (int(v),) * nd


_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _avg_like(x, nd, k, s, p, d, ceil_mode):
    if all(dd == 1 for dd in d):
        return _AVG[nd](x, k, s, p, ceil_mode=ceil_mode)
    # dilated window: depthwise convolution with a constant kernel and zero padding
    # (only the support matters, not the exact average).
    if ceil_mode:
        raise NotImplementedError("dilated max-pool with ceil_mode is not supported")
    c = x.shape[1]
    w = torch.full((c, 1, *k), 1.0 / math.prod(k), dtype=x.dtype, device=x.device)
    return _CONV[nd](x, w, None, s, p, d, groups=c)


_MAXPOOL_TYPES = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_ADAPTIVE_MAX = {nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
                 nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d}
_DROP_NORMS = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _replace_modules(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        new = None
        if type(child) in _MAXPOOL_TYPES and not child.return_indices:
            nd = _MAXPOOL_TYPES[type(child)]
            new = _AvgPoolLike(nd, child.kernel_size, child.stride, child.padding,
                               child.dilation, child.ceil_mode)
        elif type(child) in _ADAPTIVE_MAX and not child.return_indices:
            new = _ADAPTIVE_MAX[type(child)](child.output_size)
        elif isinstance(child, _DROP_NORMS):
            new = nn.Identity()
        if new is not None:
            setattr(model, name, new)
        else:
            _replace_modules(child)


def prepare_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deep copy of ``model`` made monotone: float64, eval, positive weights, zero biases,
    neutral BatchNorm statistics, max-pools swapped for average pools."""
    m = copy.deepcopy(model)
    _replace_modules(m)
    m = m.double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.split(".")[-1].endswith("bias"):
                p.zero_()
            elif p.dim() >= 2:
                fan_in = max(1, math.prod(p.shape[1:]))
                p.copy_((0.1 + 0.9 * torch.rand(p.shape, generator=g, dtype=torch.float64)) / fan_in)
            else:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g, dtype=torch.float64))
            p.requires_grad_(False)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                if mod.running_mean is not None:
                    mod.running_mean.zero_()
                    mod.running_var.fill_(1.0)
                else:  # track_running_stats=False would use batch statistics
                    mod.track_running_stats = True
                    mod.register_buffer("running_mean", torch.zeros(mod.num_features, dtype=torch.float64))
                    mod.register_buffer("running_var", torch.ones(mod.num_features, dtype=torch.float64))
    return m


def _detached(fn):
    def detached(*args, **kwargs):
        return fn(*args, **kwargs).detach()
    return detached


@contextlib.contextmanager
def _gates_detached(enabled: bool = True):
    """Temporarily make every sigmoid / hard-sigmoid / softmax return a detached tensor.

    ``nn.Sigmoid`` calls ``torch.sigmoid``, ``nn.Hardsigmoid`` ``F.hardsigmoid``,
    ``nn.Softmax`` ``F.softmax``, ``F.sigmoid`` ``Tensor.sigmoid``: patching the functions
    and Tensor methods below covers the module forms too.
    """
    if not enabled:
        yield
        return
    targets = [(torch, "sigmoid"), (torch, "softmax"), (torch.Tensor, "sigmoid"),
               (torch.Tensor, "softmax"), (F, "sigmoid"), (F, "hardsigmoid"), (F, "softmax"),
               (torch.special, "expit"), (torch.special, "softmax")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, fn in saved:
        setattr(owner, name, _detached(fn))
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


@contextlib.contextmanager
def _functional_maxpool_as_avg():
    """Temporarily route ``F.max_poolNd`` / ``F.adaptive_max_poolNd`` to average pools."""
    saved = {}

    def make_max(nd):
        orig = getattr(F, f"max_pool{nd}d")

        def patched(input, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode=False, return_indices=False):
            if return_indices:
                return orig(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
            k = _tup(kernel_size, nd)
            s = _tup(stride, nd) if stride not in (None, [], ()) else k
            return _avg_like(input, nd, k, s, _tup(padding, nd), _tup(dilation, nd), ceil_mode)
        return patched

    def make_adaptive(nd):
        orig = getattr(F, f"adaptive_max_pool{nd}d")
        avg = getattr(F, f"adaptive_avg_pool{nd}d")

        def patched(input, output_size, return_indices=False):
            if return_indices:
                return orig(input, output_size, return_indices)
            return avg(input, output_size)
        return patched

    for nd in (1, 2, 3):
        for name, maker in ((f"max_pool{nd}d", make_max), (f"adaptive_max_pool{nd}d", make_adaptive)):
            saved[name] = getattr(F, name)
            setattr(F, name, maker(nd))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)


# --------------------------------------------------------------------------- core
def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        for v in out.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(out, (tuple, list)):
        for v in out:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _select(out, output_key):
    if output_key is not None:
        out = out[output_key]
    t = _first_tensor(out)
    if t is None:
        raise TypeError("model output contains no tensor")
    return t


def _centre_value(t: torch.Tensor, channel: Optional[int]) -> torch.Tensor:
    if t.dim() < 3:
        raise ValueError(f"output {tuple(t.shape)} has no spatial axes")
    if any(n == 0 for n in t.shape[2:]):
        raise ValueError(f"output {tuple(t.shape)} has an empty spatial axis")
    idx = tuple((n - 1) // 2 for n in t.shape[2:])
    v = t[(0, slice(None)) + idx]
    return v.sum() if channel is None else v[channel]


def _support_from_grad(grad: torch.Tensor) -> Support:
    nz = grad[0].abs().sum(dim=0) != 0  # over channels -> spatial mask
    size = tuple(nz.shape)
    if not bool(nz.any()):
        raise ValueError("gradient is identically zero: output does not depend on the input")
    lo, hi = [], []
    for ax in range(nz.dim()):
        other = tuple(a for a in range(nz.dim()) if a != ax)
        line = nz.any(dim=other) if other else nz
        where = torch.nonzero(line).flatten()
        lo.append(int(where.min()))
        hi.append(int(where.max()))
    return Support(tuple(lo), tuple(hi), size)


def _make_input(input_shape, seed):
    g = torch.Generator().manual_seed(seed + 1)
    x = 1e-3 + 1e-4 * torch.rand((1, *input_shape), generator=g, dtype=torch.float64)
    return x.requires_grad_(True)


def _captured(model, input_shape, module_names, io, prepared, seed, detach_gates=True):
    """Run one forward pass, keep each module's first output (or input); returns the
    input tensor and {name: tensor}.  The pass stops once every module was reached."""
    if io not in ("output", "input"):
        raise ValueError("io must be 'output' or 'input'")
    m = model if prepared else prepare_model(model, seed)
    mods = dict(m.named_modules())
    missing = [n for n in module_names if n not in mods]
    if missing:
        raise KeyError(f"no sub-module named {missing}")
    captured: dict = {}
    wanted = set(module_names)
    handles = []

    def make_hook(name):
        def hook(_mod, inp, out=None):
            if name not in captured:
                t = _first_tensor(out if io == "output" else inp)
                captured[name] = t.clone()  # later in-place ops must not touch it
            if wanted.issubset(captured):
                raise _Stop
        return hook

    for n in module_names:
        if io == "output":
            handles.append(mods[n].register_forward_hook(make_hook(n)))
        else:
            handles.append(mods[n].register_forward_pre_hook(make_hook(n)))
    x = _make_input(tuple(input_shape), seed)
    try:
        with _functional_maxpool_as_avg(), _gates_detached(detach_gates):
            m(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    not_run = [n for n in module_names if n not in captured]
    if not_run:
        raise RuntimeError(f"modules never executed: {not_run}")
    return x, captured


def gradient_support_many(model: nn.Module, input_shape: Sequence[int],
                          module_names: Sequence[str], *, channel: Optional[int] = None,
                          io: str = "output", prepared: bool = False, seed: int = 0,
                          detach_gates: bool = True) -> dict:
    """Supports of the centre unit of several sub-modules from ONE forward pass.

    ``io="output"`` takes each module's output, ``io="input"`` its (first) input, i.e.
    ``r_{l-1}`` for the border rule.  The forward pass stops as soon as every hooked
    module has been reached; each support then costs one backward pass from that
    module.  Modules called more than once: the first call counts.
    """
    x, captured = _captured(model, input_shape, module_names, io, prepared, seed, detach_gates)
    result = {}
    for n in module_names:
        (grad,) = torch.autograd.grad(_centre_value(captured[n], channel), x, retain_graph=True)
        result[n] = _support_from_grad(grad)
    return result


def gradient_supports_at(model: nn.Module, input_shape: Sequence[int],
                         module_names: Sequence[str], units: Sequence, *,
                         prepared: bool = False, seed: int = 0, detach_gates: bool = True) -> dict:
    """{module name: tuple of (unit index, Support), one per entry of ``units``} from ONE
    forward pass.

    A unit is ``"centre"`` or a tuple with one index per spatial axis of the module's
    output (negative indices count from the end); the index returned is the resolved,
    non-negative one.  Summed over channels.
    """
    x, captured = _captured(model, input_shape, module_names, "output", prepared, seed,
                            detach_gates)
    result = {}
    for n in module_names:
        t = captured[n]
        supports = []
        for unit in units:
            index = tuple((k - 1) // 2 for k in t.shape[2:]) if unit == "centre" else \
                tuple(u % k for u, k in zip(unit, t.shape[2:]))
            value = t[(0, slice(None)) + index].sum()
            (grad,) = torch.autograd.grad(value, x, retain_graph=True)
            supports.append((index, _support_from_grad(grad)))
        result[n] = tuple(supports)
    return result


def gradient_support(model: nn.Module, input_shape: Sequence[int], module_name: Optional[str] = None,
                     output_key=None, *, channel: Optional[int] = None, io: str = "output",
                     prepared: bool = False, seed: int = 0, detach_gates: bool = True) -> Support:
    """Gradient support of the centre unit (see module docstring).

    ``input_shape`` is ``(C, *spatial)`` without the batch axis; ``io`` as in
    :func:`gradient_support_many` (only with ``module_name``); ``detach_gates`` as in the
    module docstring ("Gates").
    """
    if module_name is not None:
        return gradient_support_many(model, input_shape, [module_name], channel=channel, io=io,
                                     prepared=prepared, seed=seed,
                                     detach_gates=detach_gates)[module_name]
    m = model if prepared else prepare_model(model, seed)
    x = _make_input(tuple(input_shape), seed)
    with _functional_maxpool_as_avg(), _gates_detached(detach_gates):
        out = m(x)
    (grad,) = torch.autograd.grad(_centre_value(_select(out, output_key), channel), x)
    return _support_from_grad(grad)


def gradient_rf(model: nn.Module, input_shape: Sequence[int], module_name: Optional[str] = None,
                output_key=None, *, channel: Optional[int] = None, io: str = "output",
                allow_clipped: bool = False, prepared: bool = False, seed: int = 0,
                detach_gates: bool = True) -> Tuple[int, ...]:
    """Extent per spatial axis of the gradient support of the centre output unit.

    Raises :class:`ClippedError` if the support touches the input border (the true RF
    may be larger), unless ``allow_clipped``.
    """
    sup = gradient_support(model, input_shape, module_name, output_key, channel=channel, io=io,
                           prepared=prepared, seed=seed, detach_gates=detach_gates)
    if sup.clipped and not allow_clipped:
        raise ClippedError(f"support {sup} touches the border of input {tuple(input_shape)}; "
                           "use a larger input (see smallest_unclipped_shape)")
    return sup.extent


def _axis_search(model, input_shape, module_name, output_key, channel, max_size, multiple, seed,
                 detach_gates=True):
    """Per-axis search behind :func:`smallest_unclipped_shape`.

    Returns ``(base, sizes, extents)``: ``base`` = spatial sizes at which the model runs,
    ``sizes[a]`` = smallest size found for axis ``a`` (other axes at ``base``) whose
    support does not touch the border along ``a``, ``extents[a]`` = the extent there.
    """
    m = prepare_model(model, seed)
    c = int(input_shape[0])

    def rnd(v):
        return int(math.ceil(v / multiple) * multiple)

    def probe(sp):
        try:
            return gradient_support(m, (c, *sp), module_name, output_key, channel=channel,
                                    prepared=True, seed=seed, detach_gates=detach_gates)
        except (RuntimeError, ValueError):
            return None  # cannot run at this size (a feature map collapsed, ...)

    def grow(v):
        v = rnd(max(v + 1, math.ceil(v * 1.5)))
        if v > max_size:
            raise ClippedError(f"support still clipped beyond size {max_size}")
        return v

    base = [rnd(max(1, int(s))) for s in input_shape[1:]]
    first = probe(base)
    while first is None:  # find a size where the model runs at all
        base = [grow(v) for v in base]
        first = probe(base)
    sizes, extents = [], []
    for a in range(len(base)):
        lo, n, sup = 0, base[a], first
        while sup is None or sup.touches_border()[a]:
            lo, n = n, grow(n)
            sup = probe(base[:a] + [n] + base[a + 1:])
        hi, best = n, sup
        while hi - lo > multiple:  # bisect down
            mid = rnd((lo + hi) // 2)
            if mid >= hi or mid <= lo:
                break
            s2 = probe(base[:a] + [mid] + base[a + 1:])
            if s2 is not None and not s2.touches_border()[a]:
                hi, best = mid, s2
            else:
                lo = mid
        sizes.append(hi)
        extents.append(best.extent[a])
    return base, sizes, extents


def smallest_unclipped_shape(model: nn.Module, input_shape: Sequence[int],
                             module_name: Optional[str] = None, output_key=None, *,
                             channel: Optional[int] = None, max_size: int = 4096,
                             multiple: int = 1, seed: int = 0,
                             detach_gates: bool = True) -> Tuple[int, ...]:
    """Smallest input (per axis) whose gradient support does not touch the border.

    Starts from ``input_shape`` = ``(C, *spatial)`` (grown x1.5 on every axis until the
    model runs).  Each axis is then searched on its own, the other axes kept at the
    start size: grow x1.5 until the support no longer touches the border along that
    axis, then bisect between the last failing and the first passing size.  Axes are
    independent: with positive weights the support along one axis is the projection
    of the full support, which does not depend on the other axes' sizes (the path
    through the centre taps of the other axes always exists).  Touching the border is
    only roughly monotone in the size (stride alignment), so the result is the smallest
    size the bisection finds, not a proven minimum; it always passes.  ``multiple``
    rounds sizes up (e.g. 8 for a U-Net).  Returns ``(C, *spatial)``.
    """
    _, sizes, _ = _axis_search(model, input_shape, module_name, output_key, channel,
                               max_size, multiple, seed, detach_gates)
    return (int(input_shape[0]), *sizes)


def gradient_rf_auto(model: nn.Module, input_shape: Sequence[int], module_name: Optional[str] = None,
                     output_key=None, *, channel: Optional[int] = None, max_size: int = 4096,
                     multiple: int = 1, strips: bool = True, seed: int = 0,
                     detach_gates: bool = True) -> Tuple[int, ...]:
    """RF extents without choosing an input size.

    With ``strips=True`` (default) each axis is measured on its own "strip" input found
    by :func:`smallest_unclipped_shape`'s search (long along that axis only; cheap for
    large fields).  With ``strips=False``: :func:`gradient_rf` at the full
    :func:`smallest_unclipped_shape`.

    >>> import torch.nn as nn
    >>> gradient_rf_auto(nn.Sequential(nn.Conv1d(1, 2, 5), nn.Conv1d(2, 2, 5)), (1, 4))
    (9,)
    """
    _, sizes, extents = _axis_search(model, input_shape, module_name, output_key, channel,
                                     max_size, multiple, seed, detach_gates)
    if strips:
        return tuple(extents)
    return gradient_rf(model, (int(input_shape[0]), *sizes), module_name, output_key,
                       channel=channel, seed=seed, detach_gates=detach_gates)


if __name__ == "__main__":  # pragma: no cover
    import doctest

    doctest.testmod(verbose=False)
    print("doctests ok")
