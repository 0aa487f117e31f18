"""The gradient-support oracle (tests/oracle.py) against the reference values of
docs/method.md §9.  Only the oracle is tested here, never rfalint.

Input sizes: each module is probed at an input just large enough for its receptive field
(see ``_extents``); the oracle flags a support that touches the border and the helper
then grows the input, so a size that is too small can never pass silently.  The paper
nets are the real fixtures (real widths), except ResNet34 at ~1000 px, which uses
``width=8`` (``test_resnet34_width_does_not_change_rf`` checks that width is irrelevant).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import (  # noqa: E402
    ClippedError,
    gradient_rf,
    gradient_rf_auto,
    gradient_support,
    gradient_support_many,
    prepare_model,
    smallest_unclipped_shape,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Single-threaded torch for this file: these many small float64 ops gain little
    from intra-op threads, and on a busy 2-core machine OpenMP spinning made the file
    ~5x slower.  The previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(stem: str, entry: str):
    """Import fixtures/<stem>.py under a private module name and return its entry point."""
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    name = f"_oracle_fixture_{stem}"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{stem}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return getattr(mod, entry)


@functools.lru_cache(maxsize=None)
def _prepared(stem: str, entry: str, **kwargs):
    return prepare_model(_load(stem, entry)(**kwargs))


class _Done(Exception):
    pass


def _jumps(pm, names, channels, io, base=32):
    """Cumulative stride ("jump") of each module's output (or input) along axis 0, from
    the output sizes at two input heights (cheap no-grad forwards; shapes only)."""
    mods = dict(pm.named_modules())
    sizes = []
    for side in (base, 2 * base):
        got = {}

        def make(name):
            def hook(_m, inp, out=None):
                t = out if io == "output" else inp
                t = t if isinstance(t, torch.Tensor) else t[0]
                got.setdefault(name, t.shape[2])
                if len(got) == len(names):
                    raise _Done
            return hook

        hs = [mods[n].register_forward_hook(make(n)) if io == "output"
              else mods[n].register_forward_pre_hook(make(n)) for n in names]
        try:
            with torch.no_grad():
                pm(torch.zeros(1, channels, side, base, dtype=torch.float64))
        except _Done:
            pass
        finally:
            for h in hs:
                h.remove()
        sizes.append(got)
    return {n: max(1, round(base / max(1, sizes[1][n] - sizes[0][n]))) for n in names}


def _extents(pm, names, expected, *, channels=3, io="output", merge=1.3, tries=4):
    """Oracle extent (per axis) of every module in ``names`` of the prepared model ``pm``.

    Input sizes: each module gets a side of about ``r + 2 * jump`` (its own jump), so the
    centre unit's field fits; the forward pass stops at the module, so early modules
    are probed on small inputs.  Large fields are measured on strips: axis 0 on a tall
    (side x jump) input, axis 1 on a wide one.  With all weights positive the support
    along one axis is the projection of the 2-D support, which clipping along the other
    axis does not change (the path through the centre taps of the other axis always
    exists), so only the measured axis must be unclipped.  Modules with similar size
    needs share one forward pass; a side grows while a support touches the border.
    """
    jumps = _jumps(pm, names, channels, io)
    sizes = {n: jumps[n] * math.ceil((r + 2 * jumps[n] + 4) / jumps[n])
             for n, r in zip(names, expected)}
    groups: list[list[str]] = []
    for n in sorted(names, key=lambda n: (sizes[n], jumps[n])):
        g = groups[-1] if groups else None
        if g and sizes[n] <= merge * sizes[g[0]] and jumps[n] == jumps[g[0]]:
            g.append(n)
        else:
            groups.append([n])
    out = {}
    for group in groups:
        side = max(sizes[n] for n in group)
        jump = narrow = jumps[group[0]]
        for _ in range(tries):
            ext = {n: [0, 0] for n in group}
            clipped = False
            if side <= 2 * narrow:
                probes = [((0, 1), (channels, side, side))]
            else:
                probes = [((0,), (channels, side, narrow)), ((1,), (channels, narrow, side))]
            for axes, shape in probes:
                res = gradient_support_many(pm, shape, group, io=io, prepared=True)
                for n, s in res.items():
                    for axis in axes:
                        ext[n][axis] = s.extent[axis]
                        clipped |= s.touches_border()[axis]
            if not clipped:
                break
            side += jump
        else:
            raise ClippedError(f"{group} still clipped at {side}")
        out.update({n: tuple(e) for n, e in ext.items()})
    return [out[n] for n in names]


def _square(extents):
    assert all(len(set(e)) == 1 for e in extents), extents
    return [e[0] for e in extents]


def _convs(model, exclude=("downsample",)):
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and not any(x in n for x in exclude)]


def _pools(model):
    """Max-pools (already swapped for average pools in a prepared model)."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.MaxPool2d) or type(m).__name__ == "_AvgPoolLike"]


# --------------------------------------------------------------------------- VGG
VGG11_R = [3, 8, 18, 26, 46, 62, 102, 134]
VGG16_R = [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]


@pytest.mark.parametrize("stem, expected, after_pool", [
    ("vgg11", VGG11_R, 150),
    ("vgg16", VGG16_R, 212),
])
def test_vgg_per_conv_rf(stem, expected, after_pool):
    model = _prepared(stem, stem)
    names = _convs(model) + _pools(model)[-1:]
    got = _square(_extents(model, names, expected + [after_pool]))
    assert got == expected + [after_pool]


def test_vgg19_final_rf():
    model = _prepared("vgg19", "vgg19")
    names = [_convs(model)[-1], _pools(model)[-1]]
    assert _square(_extents(model, names, [252, 268])) == [252, 268]


@pytest.mark.parametrize("stem, border", [
    ("vgg11", 6), ("vgg13", 7), ("vgg16", 8), ("vgg19", 8), ("vgg19_dilated", 5),
])
def test_vgg_border_layer_at_32(stem, border):
    """Border = first conv (1-based) whose *input* has r > I = 32 (paper §IV)."""
    I = 32
    model = _prepared(stem, stem)
    convs = _convs(model)[:border]
    # axis 0 only (tall strip input; the clipped short axis does not affect axis 0)
    sup = gradient_support_many(model, (3, 160, 32), convs, io="input", prepared=True)
    r_in = [sup[n].extent[0] for n in convs]
    # every conv before the border sees an unclipped field of at most I ...
    assert all(not sup[n].touches_border()[0] for n in convs[:-1])
    assert all(r <= I for r in r_in[:-1]), r_in
    # ... and the border conv's input field exceeds I (a clipped extent is a lower bound)
    assert r_in[-1] > I, r_in


def test_vgg19_dilated_effective_kernel_7():
    model = _prepared("vgg19_dilated", "vgg19_dilated")
    names = _convs(model)[:4]
    assert _square(_extents(model, names, [7, 13, 26, 38])) == [7, 13, 26, 38]


# --------------------------------------------------------------------------- ResNet
RESNET18_RMAX = [7, 19, 27, 35, 43, 51, 67, 83, 99, 115, 147, 179, 211, 243, 307, 371, 435]


def test_resnet18_imagenet_stem_rmax_per_conv():
    model = _prepared("resnet18", "resnet18")
    names = _convs(model)
    assert len(names) == 17
    assert _square(_extents(model, names, RESNET18_RMAX)) == RESNET18_RMAX


def test_resnet18_noskip_is_sequential_with_same_r():
    """Without skips the net is sequential: r = the ResNet18 r_max sequence."""
    model = _prepared("resnet18_noskip", "resnet18_noskip")
    names = _convs(model)
    assert len(names) == 17
    assert _square(_extents(model, names, RESNET18_RMAX)) == RESNET18_RMAX


@pytest.mark.parametrize("stem, entry", [
    ("resnet18", "resnet18"), ("resnet34", "resnet34"), ("resnet18_noskip", "resnet18_noskip"),
])
def test_resnet_bmax_at_32_is_conv5(stem, entry):
    """b_max at I = 32: the 5th main-path conv is the first whose input r_max > 32."""
    I = 32
    model = _prepared(stem, entry)
    convs = _convs(model)[:5]
    sup = gradient_support_many(model, (3, 128, 32), convs, io="input", prepared=True)
    r_in = [sup[n].extent[0] for n in convs]
    assert all(not sup[n].touches_border()[0] for n in convs)
    # image, stem max-pool output (7 + 2*2), then the outputs of main-path convs 2..4
    assert r_in == [1, 11, 19, 27, 35]
    assert max(r_in[:4]) <= I < r_in[4]


def test_resnet34_final_rmax_899():
    """Width-reduced (width=8): channel width does not change the geometry."""
    model = _prepared("resnet34", "resnet34", width=8)
    names = ["layer4", _convs(model)[-1]]
    assert _square(_extents(model, names, [899, 899])) == [899, 899]


def test_resnet34_width_does_not_change_rf():
    narrow = _prepared("resnet34", "resnet34", width=8)
    wide = _prepared("resnet34", "resnet34")
    names = _convs(narrow)[:8]
    assert _convs(wide)[:8] == names
    expected = _square(_extents(narrow, names, [100] * 8))
    assert expected == [7, 19, 27, 35, 43, 51, 59, 67]
    assert _square(_extents(wide, names, expected)) == expected


def test_resnet18_cifar_stem_final_rmax_109():
    model = _prepared("resnet18_cifar", "resnet18_cifar")
    names = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    got = _square(_extents(model, names, [3, 11, 25, 53, 109]))
    assert got == [3, 11, 25, 53, 109]


# --------------------------------------------------------------------------- edge cases
def _seq_extents(model, input_shape, names):
    return [gradient_rf(model, input_shape, n) for n in names]


def test_dilated_conv_then_conv():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2, padding=2), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1))
    assert _seq_extents(net, (1, 15, 15), ["0", "2"]) == [(5, 5), (7, 7)]


def test_conv_s2_transposed_conv_conv():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1),
                        nn.ConvTranspose2d(4, 4, kernel_size=2, stride=2),
                        nn.Conv2d(4, 4, 3, padding=1))
    assert _seq_extents(net, (1, 16, 16), ["0", "1", "2"]) == [(3, 3), (3, 3), (5, 5)]


class _Interpolate(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


@pytest.mark.parametrize("up", [nn.Upsample(scale_factor=2), _Interpolate()], ids=["module", "functional"])
def test_conv_s2_upsample_conv(up):
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), up, nn.Conv2d(4, 4, 3, padding=1))
    assert _seq_extents(net, (1, 16, 16), ["0", "1", "2"]) == [(3, 3), (3, 3), (5, 5)]


class _InceptionMerge(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(2, 3, 1)
        self.b3 = nn.Conv2d(2, 3, 3, padding=1)
        self.b5 = nn.Conv2d(2, 3, 5, padding=2)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x)], dim=1)


def test_inception_merge():
    net = nn.Sequential(_InceptionMerge(), nn.Conv2d(9, 4, 3, padding=1))
    shape = (2, 15, 15)
    assert gradient_rf(net, shape, "0") == (5, 5)            # r_max at the merge
    per_channel = [gradient_rf(net, shape, "0", channel=c)[0] for c in range(9)]
    assert per_channel == [1] * 3 + [3] * 3 + [5] * 3      # r_min = 1 at the merge
    assert gradient_rf(net, shape, "1") == (7, 7)            # r_max after conv3
    assert min(gradient_rf(net, shape, "1", channel=c)[0] for c in range(4)) == 7


def test_1x7_then_7x1():
    net = nn.Sequential(nn.Conv2d(1, 4, (1, 7), padding=(0, 3)), nn.Conv2d(4, 4, (7, 1), padding=(3, 0)))
    assert _seq_extents(net, (1, 11, 11), ["0", "1"]) == [(1, 7), (7, 7)]


def test_conv1d_k5_then_k5():
    net = nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.ReLU(), nn.Conv1d(4, 4, 5, padding=2))
    assert _seq_extents(net, (1, 13), ["0", "2"]) == [(5,), (9,)]


class _ModuleForm(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(8, 4, 5, padding=2)

    def forward(self, x):
        x = self.pool(self.c1(x))
        y = x + self.c2(x)
        return self.c3(torch.cat([x, y], 1))


class _FunctionalForm(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.w2 = nn.Parameter(torch.randn(4, 4, 3, 3))
        self.w3 = nn.Parameter(torch.randn(4, 8, 5, 5))

    def forward(self, x):
        x = F.max_pool2d(F.conv2d(x, self.w1, padding=1), 3, 2, 1)
        y = x
        y = y + F.conv2d(x, self.w2, padding=1)
        return F.conv2d(torch.cat([x, y], 1), self.w3, padding=2)


def test_functional_forms_match_module_forms():
    # 3 -> max-pool 3/2 -> 5 (j 2) -> conv3 -> 9 -> merge r_max 9 -> conv5 -> 17
    shape = (2, 41, 41)
    assert gradient_rf(_ModuleForm(), shape) == gradient_rf(_FunctionalForm(), shape) == (17, 17)


def test_functional_max_pool_is_patched():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return F.max_pool2d(self.c(x), kernel_size=3, stride=1, padding=1)

    assert gradient_rf(Net(), (1, 11, 11)) == (5, 5)  # a true max would route to one tap


def test_functional_net_fixture():
    """Hand-derived: stem 3, pool 4 (j2), two 3x3 paths 12, pool 14 (j4), conv 22,
    nearest x2 up + cat with skip + 1x1 + in-place add: r_max 22."""
    net = _load("functional_net", "FunctionalNet")()
    assert gradient_rf_auto(net, (3, 16, 16), output_key="features") == (22, 22)


def test_nonsquare_fixture_axes():
    """conv(1,7) -> conv(7,1): (7,7); conv(3,5) s(1,2): (9,11) j(1,2); pool (2,1)/(2,1):
    (10,11) j(2,2); conv(5,3) dil(1,2) s(2,1): (10+4*2, 11+4*2) = (18, 19)."""
    net = _load("nonsquare", "NonSquareNet")()
    got = [gradient_rf_auto(net, (3, 8, 8), n) for n in ["conv7x1", "conv3x5", "pool", "conv5x3"]]
    assert got == [(7, 7), (9, 11), (10, 11), (18, 19)]


# --------------------------------------------------------------------------- oracle itself
def test_oracle_flags_clipping_and_grows():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.Conv2d(2, 2, 5, padding=2))
    with pytest.raises(ClippedError):
        gradient_rf(net, (1, 8, 8))
    sup = gradient_support(net, (1, 8, 8))
    assert sup.clipped and sup.extent[0] < 9
    shape = smallest_unclipped_shape(net, (1, 2, 2))
    assert shape == (1, 11, 11)
    assert gradient_rf(net, shape) == (9, 9)


def test_oracle_leaves_model_untouched():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gradient_rf(net, (1, 12, 12))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(net[2], nn.MaxPool2d) and net[0].weight.dtype == torch.float32
    assert F.max_pool2d(torch.tensor([[[[0.0, 1.0]]]]), (1, 2)).item() == 1.0


def test_oracle_doctests():
    import doctest

    import oracle

    failures, _ = doctest.testmod(oracle)
    assert failures == 0
