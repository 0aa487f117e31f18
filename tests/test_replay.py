"""Replaying a capture at another input shape (rfalint.capture.Captures) must give exactly
the graph a capture at that shape gives, or fall back to capturing: on every fixture, on
random stacks of layers whose forwards read their sizes, branch on them, pad to multiples,
resize to another map's size and catch failures, and at shapes where the forward fails."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.onnx.operators import shape_as_tensor

from rfalint.capture import Captures, capture
from rfalint.errors import CollapseError, ModelError

from conftest import FIXTURE_NAMES, fixture_input_shape, fixture_model, small_kwargs
from test_capture_differential import everything

pytestmark = pytest.mark.usefixtures("one_thread")

# Fixtures whose Python reads no size that changes with the input: all shapes but the
# first are replays. The others read sizes (SE/CBAM/ResNeSt gates, ``interpolate`` to a
# skip's size, crops), so each shape is a capture of its own.
READS_SIZES = {"attention_unet", "cbam_resnet18", "resnest", "se_resnet", "stack_fusion",
               "tiny_fpn", "zoo_efficientnet", "functional_net"}


def outcome(get, shape):
    """The graph's full record, or the error a capture raises, as comparable values."""
    try:
        return everything(get(shape))
    except ModelError as exc:
        return type(exc), str(exc)


def assert_replays_equal_captures(model, shapes):
    graphs = Captures(model)
    for shape in shapes:
        assert outcome(graphs.at, shape) == outcome(lambda s: capture(model, s), shape), shape
    return graphs


def scaled(shape, factor):
    return (shape[0], *(max(1, round(v * factor)) for v in shape[1:]))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_replays_equal_captures(name):
    torch.manual_seed(0)
    model = fixture_model(name, **small_kwargs(name))
    shape = fixture_input_shape(name)
    vgg = name.startswith("vgg")  # Cifar head: runs at 32..63 px only
    shapes = [shape, scaled(shape, 1.5), scaled(shape, 2 if vgg else 0.5), scaled(shape, 2.5)]
    graphs = assert_replays_equal_captures(model, shapes)
    if name in READS_SIZES:
        return
    if vgg:  # 64 px: the head fails, captured once to see the failure leave the forward
        assert (graphs.captures, graphs.replays) == (2, 2)
    else:
        assert (graphs.captures, graphs.replays) == (1, 3)


# --------------------------------------------------------------------------- random stacks

C = 4


class PadToMultiple(nn.Module):
    """Pads to a multiple of 8, reading the size (detection and U-Net code does this)."""

    def forward(self, x):
        h, w = x.shape[-2:]
        return F.pad(x, [0, -w % 8, 0, -h % 8])


class SizeBranch(nn.Module):
    """A different path above 40 px, decided in Python."""

    def __init__(self):
        super().__init__()
        self.big = nn.Conv2d(C, C, 3, stride=2, padding=1)

    def forward(self, x):
        return self.big(x) if x.size(-1) > 40 else x


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(C, C)

    def forward(self, x):
        b, c, _, _ = x.size()
        return x * torch.sigmoid(self.fc(x.mean((2, 3)).view(b, c))).view(b, c, 1, 1)


class ResizeToSkip(nn.Module):
    """Down and up again, resized to the skip's size: odd sizes round differently."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(C, C, 3, stride=2, padding=1)

    def forward(self, x):
        return x + F.interpolate(self.down(x), size=x.shape[-2:], mode="nearest")


class ScaleUp(nn.Module):
    """``scale_factor`` reads no size in Python: replays."""

    def forward(self, x):
        return F.avg_pool2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), 2)


class CaughtFailure(nn.Module):
    """A 5x5 valid conv that fails on small maps, caught by the model's Python."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 5)
        self.fallback = nn.Conv2d(C, C, 1)

    def forward(self, x):
        try:
            return self.conv(x)
        except RuntimeError:
            return self.fallback(x)


class Halve(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, stride=2)

    def forward(self, x):
        return self.conv(x)


BLOCKS = {
    "conv": lambda: nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU()),
    "halve": Halve,
    "pad_to_multiple": PadToMultiple,
    "size_branch": SizeBranch,
    "squeeze_excite": SqueezeExcite,
    "resize_to_skip": ResizeToSkip,
    "scale_up": ScaleUp,
    "caught_failure": CaughtFailure,
    "flatten_head": lambda: nn.Sequential(nn.Flatten(), nn.LazyLinear(2)),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(BLOCKS)), min_size=1, max_size=6),
       st.lists(st.integers(4, 72), min_size=2, max_size=6))
def test_random_stacks_replays_equal_captures(blocks, sizes):
    if "flatten_head" in blocks:  # a head only at the end, sized for the first shape
        blocks = [b for b in blocks if b != "flatten_head"] + ["flatten_head"]
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), *(BLOCKS[b]() for b in blocks)).eval()
    if "flatten_head" in blocks:
        try:
            model(torch.zeros(1, 3, sizes[0], sizes[0]))  # materialise the lazy Linear
        except RuntimeError:
            return  # collapses already at the first size: nothing to replay
    assert_replays_equal_captures(model, [(3, s, s) for s in sizes])


def test_a_size_branch_is_replayed_only_where_the_python_would_see_the_same():
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), SizeBranch())
    graphs = assert_replays_equal_captures(model, [(3, s, s) for s in (32, 36, 48, 64, 40)])
    # x.size(-1) differs at every size: each one is its own behaviour
    assert (graphs.captures, graphs.replays) == (5, 0)
    plain = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), Halve(), ScaleUp())
    graphs = assert_replays_equal_captures(plain, [(3, s, s) for s in (32, 36, 48, 64, 40)])
    assert (graphs.captures, graphs.replays) == (1, 4)


def test_a_caught_failure_is_never_replayed_as_the_same_path():
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), CaughtFailure())
    graphs = assert_replays_equal_captures(model, [(3, s, s) for s in (32, 3, 48, 4, 2)])
    names = [n.name for n in graphs.at((3, 3, 3))]
    assert "1.fallback" in names and "1.conv" not in names


def test_failures_that_leave_the_forward_are_captured_once_then_replayed():
    model = fixture_model("vgg11")
    graphs = assert_replays_equal_captures(model, [(3, s, s) for s in (32, 64, 96, 128)])
    assert (graphs.captures, graphs.replays) == (2, 2)  # 32, then 64 to see the head fail
    graphs = Captures(model)
    graphs.at((3, 32, 32))
    for size in (16, 17):  # the fifth pool collapses: the same error as a capture
        with pytest.raises(CollapseError) as replayed:
            graphs.at((3, size, size))
        with pytest.raises(CollapseError) as captured:
            capture(model, (3, size, size))
        assert str(replayed.value) == str(captured.value)
    assert (graphs.captures, graphs.replays) == (2, 1)


# ------------------------------------------------------------ found by an adversarial review


class HookedSkip(nn.Module):
    """Skip features taken by a forward hook on an activation (fastai-style ``Hook``): the
    hook's calls run between rfalint's replacement forward and its post hook."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.enc[2].register_forward_hook(lambda m, i, o: setattr(self, "skip", o.detach()))
        self.up = nn.Conv2d(16, 8, 1)
        self.out = nn.Conv2d(16, 2, 3, padding=1)

    def forward(self, x):
        y = self.enc(x)
        up = F.interpolate(self.up(y), size=self.skip.shape[-2:], mode="nearest")
        return self.out(torch.cat([up, self.skip], 1))


class Reworded(nn.Module):
    """Catches the head's failure and raises its own error: not the failing call's."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        f = self.features(x).flatten(1)
        try:
            return self.fc(f)
        except RuntimeError as exc:
            raise ValueError("this model only accepts 32x32 inputs") from exc


class DeviceBranch(nn.Module):
    """Meta tensors are not on the CPU, fake tensors are: a meta failure is not the outcome."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.stem(x)
        y = F.adaptive_avg_pool2d(y, 1) if y.device.type == "cpu" else F.avg_pool2d(y, 7)
        return self.fc(y.flatten(1))


class ParameterRef(nn.Module):
    """``nn.Parameter(y)`` makes a tensor no torch call shows: the tape cannot follow it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)

    def forward(self, x):
        y = self.a(x)
        ref = nn.Parameter(y, requires_grad=False)
        return F.interpolate(self.b(y), size=ref.shape[-2:])


def _even_only(module, args):
    if args[0].shape[-1] % 2:
        raise ValueError("block needs an even width")


class PreHookFallback(nn.Module):
    """A forward pre-hook raises before rfalint's pre hook ran; the model catches it."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8))
        self.block.register_forward_pre_hook(_even_only)
        self.alt = nn.Conv2d(8, 8, 1)

    def forward(self, y):
        try:
            return self.block(y)
        except ValueError:
            return self.alt(y)


class HalfCrop(nn.Module):
    """An export-friendly crop: the bound is a tensor inside a slice."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        y = self.a(x)
        width = shape_as_tensor(y)[3] // 2
        return self.b(y[:, :, :, :width])


class FreedAttribute(nn.Module):
    """Replaces a tensor attribute in forward, so a tensor made later can take its id."""

    def __init__(self):
        super().__init__()
        self.a, self.extra = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 5, 1, 2)
        self.b = nn.Conv2d(8, 8, 3, 1, 1)
        self.last = torch.zeros(1)

    def forward(self, x):
        y = self.a(x)
        self.last = y.detach()
        ref = nn.Parameter(y, requires_grad=False)
        if ref.shape[-1] > 16:
            y = self.extra(y)
        return self.b(y)


class EditedMessage(Reworded):
    """Re-raises the head's own exception with an edited message."""

    def forward(self, x):
        f = self.features(x).flatten(1)
        try:
            return self.fc(f)
        except RuntimeError as exc:
            exc.args = (f"classifier: {exc.args[0]}",) + exc.args[1:]
            raise


class WarningBranch(nn.Module):
    """Warnings made errors decide the path: a replay runs outside these filters."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        buffer = y.new_empty(1, 4, 32, 32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                torch.mul(y, 2, out=buffer)
                return buffer
            except UserWarning:
                return self.b(y)


def _at_least_8(module, args):
    if args[0].shape[-1] < 8:
        raise ValueError("too small")


class Recursive(nn.Module):
    """Calls itself on a pooled map until its pre-hook refuses (re-entrant module)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)
        self.register_forward_pre_hook(_at_least_8)

    def forward(self, x):
        y = self.conv(x)
        try:
            y = y + F.interpolate(self(F.avg_pool2d(y, 2)), size=y.shape[-2:])
        except ValueError:
            pass
        return y


class DirectForward(nn.Module):
    """``bn.forward(x)`` skips the module's hooks: still a node, as on real data."""

    def __init__(self):
        super().__init__()
        self.c, self.bn, self.d = nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.d(self.bn.forward(self.c(x)))


@pytest.mark.parametrize("make, sizes", [
    (HalfCrop, (32, 48, 64)),
    (FreedAttribute, (32, 48, 64)),
    (EditedMessage, (32, 64, 48)),
    (WarningBranch, (32, 48, 40)),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), Recursive(), nn.Conv2d(4, 2, 1)),
     (32, 16, 24)),
    (DirectForward, (32, 48)),
])
def test_tensor_slices_freed_ids_edited_errors_warnings_recursion(make, sizes):
    model = make()
    assert_replays_equal_captures(model, [(3, s, s) for s in sizes])
    for size in sizes:  # and the capture takes the real-data path (messages may differ)
        assert nodes(capture, model, (3, size, size)) == \
            nodes(lambda m, s: capture(m, s, mode="real"), model, (3, size, size))


def nodes(get, model, shape):
    try:
        return [(n.name, n.op, n.out_shapes) for n in get(model, shape)]
    except ModelError as exc:
        return type(exc)


@pytest.mark.parametrize("make, sizes", [
    (HookedSkip, (32, 48, 40)),
    (Reworded, (32, 64, 48)),
    (DeviceBranch, (28, 16, 20, 12)),
    (ParameterRef, (32, 48)),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), PreHookFallback(), nn.Conv2d(8, 2, 1)),
     (32, 33, 34, 35)),
])
def test_hooks_rewrapped_errors_device_branches_and_hidden_tensors(make, sizes):
    assert_replays_equal_captures(make(), [(3, s, s) for s in sizes])
