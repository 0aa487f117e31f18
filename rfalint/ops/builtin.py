"""The ops and modules rfalint knows: each declared once, with all its forms.

Adding an op is one :class:`OpRecord` here (or :func:`rfalint.ops.register_op` from user
code); a module type that behaves as an op is one :class:`ModuleRecord`. Ops that differ
only in their number of spatial dims (``conv1d``/``conv2d``/``conv3d``) are declared by
one loop.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from rfalint.capture import geometry as g
from rfalint.capture import shapes
from rfalint.ops import macs
from rfalint.ops import python as py
from rfalint.ops.records import ModuleRecord, OpRecord, Param, Registry, Size, SpecForm

Dims = Optional[Union[int, tuple[int, ...]]]
DIMS = (1, 2, 3)

# Positional parameter names, to bind args the way torch does.
CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
CONV_TRANSPOSE = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                  "dilation")
MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
            "return_indices")
AVG_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
            "divisor_override")
ADAPTIVE_POOL = ("input", "output_size", "return_indices")
INTERPOLATE = ("input", "size", "scale_factor", "mode", "align_corners")
REDUCE = ("input", "dim", "keepdim")

# Spec parameters shared by several ops.
_POOL = {"kernel_size": Param(Size), "stride": Param(Optional[Size], None),
         "padding": Param(Size, 0)}
_MAX_POOL = {**_POOL, "dilation": Param(Size, 1), "ceil_mode": Param(bool, False)}
_AVG_POOL = {**_POOL, "ceil_mode": Param(bool, False), "count_include_pad": Param(bool, True)}
_DIVISOR = {"divisor_override": Param(Optional[int], None)}
_ADAPTIVE = {"output_size": Param(Union[int, None, tuple[Optional[int], ...]])}
_REDUCE = {"dim": Param(Dims, None), "keepdim": Param(bool, False)}


def _unary(fn: Callable[..., torch.Tensor], **params: Param) -> SpecForm:
    return SpecForm(fn, 1, params)


def _reduce_fn(method: str) -> Callable[..., torch.Tensor]:
    def run(x, dim=None, keepdim=False):
        if dim is None:
            return getattr(x, method)()
        return getattr(x, method)(dim, keepdim=keepdim)
    return run


def _squeeze(x, dim=None):
    return x.squeeze() if dim is None else x.squeeze(dim)


def _pointwise(names: str, shape_preserving: bool = False) -> list[OpRecord]:
    return [OpRecord(name, g.pointwise, shape_preserving=shape_preserving)
            for name in names.split()]


def _ops() -> list[OpRecord]:
    records = [
        # --- generic forms of leaf modules (nn.Conv2d is "conv" whatever its dims)
        OpRecord("conv", g.conv, macs=macs.conv),
        OpRecord("conv_transpose", g.conv_transpose, macs=macs.conv_transpose),
        OpRecord("max_pool", g.max_pool),
        OpRecord("avg_pool", g.avg_pool),
        OpRecord("adaptive_pool", g.adaptive_pool),
        OpRecord("identity", g.pointwise, shape_preserving=True),
        # --- windows
        *[OpRecord(f"lp_pool{n}d", g.avg_pool, ("input", "norm_type", "kernel_size", "stride",
                                                 "ceil_mode")) for n in DIMS],
        OpRecord("pixel_unshuffle", g.pixel_unshuffle, ("input", "downscale_factor"),
                 spec=_unary(F.pixel_unshuffle, downscale_factor=Param(int))),
        OpRecord("pad", g.pad, ("input", "pad", "mode", "value"),
                 spec=_unary(F.pad, pad=Param(tuple[int, ...]), mode=Param(str, "constant"),
                             value=Param(Optional[float], None))),
        # --- resampling
        OpRecord("interpolate", g.interpolate, INTERPOLATE, shape=shapes.interpolate,
                 spec=_unary(F.interpolate, size=Param(Optional[Size], None),
                             scale_factor=Param(Optional[Union[float, tuple[float, ...]]], None),
                             mode=Param(str, "nearest"),
                             align_corners=Param(Optional[bool], None),
                             recompute_scale_factor=Param(Optional[bool], None),
                             antialias=Param(bool, False))),
        *[OpRecord(name, g.interpolate, INTERPOLATE)
          for name in ("upsample", "upsample_nearest", "upsample_bilinear")],
        OpRecord("pixel_shuffle", g.pixel_shuffle, ("input", "upscale_factor"),
                 spec=_unary(F.pixel_shuffle, upscale_factor=Param(int))),
        # --- per position over channels
        OpRecord("linear", g.linear, ("input", "weight", "bias"), shape=shapes.linear,
                 macs=macs.linear),
        OpRecord("softmax", g.softmax, ("input", "dim"), shape=shapes.softmax,
                 spec=_unary(lambda x, dim: F.softmax(x, dim=dim), dim=Param(int)),
                 python=py.call("F", "softmax")),
        OpRecord("log_softmax", g.softmax, ("input", "dim"), shape=shapes.softmax,
                 spec=_unary(lambda x, dim: F.log_softmax(x, dim=dim), dim=Param(int)),
                 python=py.call("F", "log_softmax")),
        OpRecord("normalize", g.normalize, ("input", "p", "dim"),
                 spec=_unary(F.normalize, p=Param(float, 2.0), dim=Param(int, 1),
                             eps=Param(float, 1e-12))),
        # Not shape-preserving shortcuts: their shape functions check what the kernels check
        OpRecord("layer_norm", g.layer_norm, ("input", "normalized_shape"),
                 shape=shapes.layer_norm),
        OpRecord("rms_norm", g.layer_norm, ("input", "normalized_shape"),
                 shape=shapes.rms_norm),
        OpRecord("batch_norm", g.pointwise,
                 ("input", "running_mean", "running_var", "weight", "bias", "training"),
                 shape=shapes.batch_norm),
        OpRecord("group_norm", g.pointwise, ("input", "num_groups"), shape=shapes.group_norm),
        OpRecord("instance_norm", g.pointwise,
                 ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats"),
                 shape=shapes.instance_norm),
        # --- activations, norms, dropout and other ops that keep every position
        *_pointwise("""selu celu softsign dropout1d dropout2d dropout3d alpha_dropout
            feature_alpha_dropout local_response_norm
            clamp_min clamp_max""", shape_preserving=True),
        *_pointwise("""prelu rrelu logsigmoid tanhshrink softshrink hardshrink threshold exp log
            log1p sqrt rsqrt abs neg reciprocal square sin cos erf sign floor ceil round
            clone detach to float half double bfloat16 type type_as requires_grad nan_to_num
            logit pos positive real imag data"""),
        *[OpRecord(name, g.pointwise, shape_preserving=True, spec=_unary(fn))
          for name, fn in (("relu", F.relu), ("relu6", F.relu6), ("silu", F.silu),
                           ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                           ("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid),
                           ("mish", F.mish))],
        OpRecord("gelu", g.pointwise, shape_preserving=True,
                 spec=_unary(F.gelu, approximate=Param(str, "none"))),
        # positional_loss: x.clamp(0, 6) reaches the capture without its argument names
        *[OpRecord(name, g.pointwise, shape_preserving=True,
                   spec=SpecForm(fn, 1, params, positional_loss=True))
          for name, fn, params in (
              ("leaky_relu", F.leaky_relu, {"negative_slope": Param(float, 0.01)}),
              ("elu", F.elu, {"alpha": Param(float, 1.0)}),
              ("softplus", F.softplus, {"beta": Param(float, 1.0),
                                        "threshold": Param(float, 20.0)}),
              ("hardtanh", F.hardtanh, {"min_val": Param(float, -1.0),
                                        "max_val": Param(float, 1.0)}))],
        OpRecord("clamp", g.pointwise, aliases=("clip",), shape_preserving=True,
                 spec=SpecForm(torch.clamp, 1, {"min": Param(Optional[float], None),
                                                "max": Param(Optional[float], None)},
                               positional_loss=True)),
        OpRecord("dropout", g.pointwise, shape_preserving=True,
                 spec=SpecForm(lambda x, p=0.5, training=False: F.dropout(x, p, training), 1,
                               {"p": Param(float, 0.5)}, positional_loss=True,
                               uses_training=True),
                 python=lambda xs, a: f"F.dropout({xs[0]}, p={a.get('p', 0.5)!r}, "
                                      "training=self.training)"),
        OpRecord("contiguous", g.pointwise, spec=_unary(lambda x: x.contiguous()),
                 python=lambda xs, a: f"{xs[0]}.contiguous()"),
        # --- merges of several tensors
        *[OpRecord(name, g.merge, aliases=aliases, shape=shapes.binary(name),
                   spec=SpecForm(fn, 2), python=py.operator(symbol))
          for name, aliases, fn, symbol in (
              ("add", ("iadd", "radd"), torch.add, "+"),
              ("sub", ("subtract", "isub", "rsub"), torch.sub, "-"),
              ("mul", ("multiply", "imul", "rmul"), torch.mul, "*"),
              ("div", ("divide", "true_divide", "truediv", "itruediv", "rtruediv"), torch.div,
               "/"))],
        *[OpRecord(name, g.merge, shape=shapes.binary(name)) for name in shapes.COMPARISONS],
        OpRecord("maximum", g.merge, spec=SpecForm(torch.maximum, 2)),
        OpRecord("minimum", g.merge, spec=SpecForm(torch.minimum, 2)),
        OpRecord("pow", g.merge, aliases=("rpow",)),
        OpRecord("copy", g.merge, aliases=("setitem",)),
        *[OpRecord(name, g.merge) for name in """floordiv fmax fmin where addcmul addcdiv lerp and
            or xor mod remainder masked_fill""".split()],
        OpRecord("cat", g.cat, ("tensors", "dim"), aliases=("concat", "concatenate"),
                 shape=shapes.cat(stack=False),
                 spec=SpecForm(lambda *xs, dim=0: torch.cat(xs, dim=dim), None,
                               {"dim": Param(int, 0)}),
                 python=lambda xs, a: f"torch.cat([{', '.join(xs)}], dim={a.get('dim', 0)!r})"),
        OpRecord("stack", g.cat, ("tensors", "dim"), shape=shapes.cat(stack=True)),
        # --- reshapes and slices
        OpRecord("flatten", g.flatten, ("input", "start_dim", "end_dim"),
                 spec=_unary(torch.flatten, start_dim=Param(int, 0), end_dim=Param(int, -1))),
        OpRecord("view", g.reshape,
                 spec=_unary(lambda x, shape: x.view(x.shape[0], *shape),
                             shape=Param(tuple[int, ...])),
                 python=py.per_sample("view")),
        OpRecord("reshape", g.reshape,
                 spec=_unary(lambda x, shape: x.reshape(x.shape[0], *shape),
                             shape=Param(tuple[int, ...])),
                 python=py.per_sample("reshape")),
        OpRecord("view_as", g.reshape),
        OpRecord("reshape_as", g.reshape),
        OpRecord("permute", g.permute,  # its dims are bound by the tracer (varargs)
                 spec=_unary(lambda x, dims: x.permute(*dims), dims=Param(tuple[int, ...])),
                 python=lambda xs, a: f"{xs[0]}.permute({', '.join(map(str, a['dims']))})"),
        OpRecord("transpose", g.transpose, ("input", "dim0", "dim1"), aliases=("swapaxes",),
                 spec=_unary(torch.transpose, dim0=Param(int), dim1=Param(int))),
        OpRecord("squeeze", g.squeeze_like, ("input", "dim"),
                 spec=_unary(_squeeze, dim=Param(Dims, None)),
                 python=lambda xs, a: f"{xs[0]}.squeeze("
                                      f"{'' if a.get('dim') is None else repr(a['dim'])})"),
        OpRecord("unsqueeze", g.squeeze_like, ("input", "dim"),
                 spec=_unary(torch.unsqueeze, dim=Param(int))),
        OpRecord("getitem", g.getitem, ("input", "index")),
        OpRecord("split", g.split, ("input", "split_size_or_sections", "dim")),
        OpRecord("tensor_split", g.split, ("input", "split_size_or_sections", "dim")),
        OpRecord("chunk", g.split, ("input", "chunks", "dim")),
        OpRecord("unbind", g.unbind, ("input", "dim")),
        *[OpRecord(name, g.expand) for name in ("expand", "repeat", "broadcast_to")],
        OpRecord("expand_as", g.expand, spec=SpecForm(lambda x, other: x.expand_as(other), 2),
                 python=lambda xs, a: f"{xs[0]}.expand_as({xs[1]})"),
        # --- reductions
        *[OpRecord(name, g.reduce_, REDUCE, shape=shapes.reduce,
                   spec=_unary(_reduce_fn(name), **_REDUCE), python=py.reduction(name))
          for name in ("mean", "sum", "amax", "amin")],
        *[OpRecord(name, g.reduce_, REDUCE)
          for name in "max min std var norm logsumexp prod nansum nanmean".split()],
        # --- mixing of all positions: attention-like, reported as not understood
        *[OpRecord(name, g.global_mixing, macs=macs.matmul) for name in ("matmul", "mm", "bmm")],
        *[OpRecord(name, g.global_mixing, uncounted=True)
          for name in ("einsum", "baddbmm", "scaled_dot_product_attention",
                       "multi_head_attention_forward")],
    ]
    for n in DIMS:
        records += [
            OpRecord(f"conv{n}d", g.conv, CONV, shape=shapes.conv(n), macs=macs.conv),
            OpRecord(f"conv_transpose{n}d", g.conv_transpose, CONV_TRANSPOSE,
                     shape=shapes.conv_transpose(n), macs=macs.conv_transpose),
            OpRecord(f"max_pool{n}d", g.max_pool, MAX_POOL, shape=shapes.pool(n, True),
                     spec=_unary(getattr(F, f"max_pool{n}d"), **_MAX_POOL)),
            OpRecord(f"max_pool{n}d_with_indices", g.max_pool, MAX_POOL),
            OpRecord(f"avg_pool{n}d", g.avg_pool, AVG_POOL, shape=shapes.pool(n, False),
                     spec=_unary(getattr(F, f"avg_pool{n}d"), **_AVG_POOL,
                                 **(_DIVISOR if n > 1 else {}))),
            OpRecord(f"adaptive_max_pool{n}d_with_indices", g.adaptive_pool, ADAPTIVE_POOL),
            *[OpRecord(f"adaptive_{kind}_pool{n}d", g.adaptive_pool, ADAPTIVE_POOL,
                       shape=shapes.adaptive(n),
                       spec=_unary(getattr(F, f"adaptive_{kind}_pool{n}d"), **_ADAPTIVE))
              for kind in ("avg", "max")],
        ]
    return records


def _attrs(*names: str) -> Callable[[nn.Module], dict[str, Any]]:
    """Read the op's arguments from module attributes of the same names."""
    return lambda m: {n: getattr(m, n) for n in names if hasattr(m, n)}


_CONV_ATTRS = _attrs("kernel_size", "stride", "padding", "dilation", "groups")
_POOL_ATTRS = _attrs("kernel_size", "stride", "padding", "dilation")
_NONE = _attrs()


def _modules() -> list[ModuleRecord]:
    def each(op: str, read_args, types: Sequence[type]) -> list[ModuleRecord]:
        return [ModuleRecord(t, op, read_args) for t in types]

    return [
        *each("conv", _CONV_ATTRS, (nn.Conv1d, nn.Conv2d, nn.Conv3d)),
        *each("conv_transpose", _CONV_ATTRS,
              (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
        *each("max_pool", _POOL_ATTRS, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)),
        *each("avg_pool", _POOL_ATTRS,
              (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d)),
        *each("adaptive_pool", _attrs("output_size"),
              (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
               nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)),
        *each("interpolate", _attrs("mode", "align_corners"),
              (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)),
        ModuleRecord(nn.PixelShuffle, "pixel_shuffle", _attrs("upscale_factor")),
        ModuleRecord(nn.PixelUnshuffle, "pixel_unshuffle", _attrs("downscale_factor")),
        ModuleRecord(nn.Flatten, "flatten", _attrs("start_dim", "end_dim")),
        ModuleRecord(nn.Linear, "linear", _NONE),
        ModuleRecord(nn.Softmax, "softmax", _attrs("dim")),
        ModuleRecord(nn.LogSoftmax, "softmax", _attrs("dim")),
        ModuleRecord(nn.LayerNorm, "layer_norm", _attrs("normalized_shape")),
        *each("rms_norm", _attrs("normalized_shape"),
              [nn.RMSNorm] if hasattr(nn, "RMSNorm") else []),  # torch >= 2.4
        *each("pad", lambda m: {"pad": m.padding},
              (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
               nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
               nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
               nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)),
        *each("identity", _NONE,
              (nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
               nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
               nn.Hardtanh, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
               nn.Softshrink, nn.Hardshrink, nn.Threshold, nn.RReLU, nn.Dropout, nn.Dropout1d,
               nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
               nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LocalResponseNorm, nn.ChannelShuffle)),
        *each("group_norm", _NONE, (nn.GroupNorm,)),
        *each("instance_norm", _NONE, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)),
    ]


def default_registry() -> Registry:
    return Registry(_ops(), _modules())
