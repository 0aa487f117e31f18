"""rfalint sweep: every row equals a separate check at that resolution; bad ranges exit 2."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from clihelp import run
from conftest import FIXTURES, fixture_model

import rfalint
from rfalint.errors import ModelError, UsageError
from rfalint.graph import Kind
from rfalint.sweep import parse_resolutions, sweep


def _expected(model, size: int, ndim: int = 2, channels: int = 3, object_size=None) -> dict:
    """What a plain ``rfalint.check`` says at one resolution, in the row's terms."""
    result = rfalint.check(model, (channels, *(size,) * ndim), counter="rfalint-graph",
                           object_size=object_size)
    analysis = result.analysis
    graph, border = analysis.graph, analysis.border
    share = result.cost.share(border.tail)
    return {
        "b_min": analysis.layer_name(border.b_min.node) if border.b_min else None,
        "b_min_index": border.b_min.index if border.b_min else None,
        "tail_convs": sum(1 for t in border.tail if graph[t].kind is Kind.CONV),
        "tail_params_share": share.params_fraction,
        "tail_macs_share": share.macs_fraction,
        "tail_memory_share": result.memory.share(border.tail)[1],
        "critical": sum(1 for layer in border.sequence
                        if border.status[layer.node] == "critical"),
        "degenerate": sum(1 for f in result.findings if f.code == "RFA103"),
        "r_max_final": analysis.rf_final.r_max,
        "reference": analysis.reference,
        "activation_peak": result.memory.peak,
        "runs": not graph.head_error,
        "error": f"head fails: {graph.head_error}" if graph.head_error else None,
        "outputs": [(v.name, v.border.b_min.index if v.border.b_min else None)
                    for v in analysis.outputs],
    }


def _actual(row) -> dict:
    return {key: getattr(row, key) for key in (
        "b_min", "b_min_index", "tail_convs", "tail_params_share", "tail_macs_share",
        "tail_memory_share", "critical", "degenerate", "r_max_final", "reference",
        "activation_peak", "runs", "error")} | {
        "outputs": [(o["output"], o["b_min_index"]) for o in row.outputs]}


@pytest.mark.parametrize("name, sizes, object_size", [
    ("resnet18", [16, 32, 64, 160], None),        # classification, fixed geometry
    ("tiny_fpn", [48, 56, 64, 72], None),          # detection: 3 outputs, size= interpolate
    ("tiny_fpn", [64, 96], "p3=8:16,p5=16:48"),    # per-output object sizes
    ("unet", [32, 48, 64], None),                  # segmentation
    ("vgg16", [32, 64], "32"),                     # head fails at 64: a row, not an error
    ("vgg11", [32, 48, 64, 80], None),             # replays; a failing head replayed
    ("se_resnet", [32, 48], None),                 # reads x.size(): each size captured
])
def test_rows_equal_separate_checks(name, sizes, object_size):
    model = fixture_model(name)
    objects = rfalint.api.object_sizes(object_size)
    result = sweep(model, 3, 2, sizes, name, objects)
    assert [row.resolution for row in result.rows] == [(s, s) for s in sizes]
    for size, row in zip(sizes, result.rows):
        assert _actual(row) == _expected(model, size, object_size=object_size), size


def test_rf_propagation_is_reused_only_where_geometry_is_fixed():
    fixed = sweep(fixture_model("resnet18"), 3, 2, [32, 64, 96, 128], "r18")
    assert (fixed.captures, fixed.replays, fixed.rf_computations) == (1, 3, 1)
    # Input 64 and 128 give even maps at every level: nearest x2 exactly; 72 does not.
    fpn = sweep(fixture_model("tiny_fpn"), 3, 2, [64, 128, 72], "fpn")
    assert fpn.rf_computations == 2


def test_collapsed_feature_map_is_a_row_and_productive_range():
    result = sweep(fixture_model("vgg16"), 3, 2, [8, 32], "vgg16")
    collapsed, ok = result.rows
    assert not collapsed.runs and not collapsed.analysed and "collapses" in collapsed.error
    assert ok.runs and ok.b_min_index == 8
    seq = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(4)],
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    # 4 convs: input r of the last is 7, final r_max 9: productive for 7..9 px.
    result = sweep(seq, 3, 2, list(range(4, 13)), "seq")
    assert result.productive_ranges() == [(7, 9)]


@pytest.mark.parametrize("text, sizes", [
    ("16:64", [16, 32, 48, 64]), ("16:64:16", [16, 32, 48, 64]), ("10:30:7", [10, 17, 24]),
    ("16:1024:x2", [16, 32, 64, 128, 256, 512, 1024]), ("32,224,64, 128", [32, 64, 128, 224]),
    ("7", [7]),
])
def test_parse_resolutions(text, sizes):
    assert parse_resolutions(text) == sizes


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("64:16", "backwards"), ("0:64", "positive"), ("16:64:0", "positive"),
    ("-8,16", "positive"), ("16:64:x1", "factor"), ("1:5000", "at most 1000"),
    ("1:2000:1", "at most 1000"), ("a:b", "whole numbers"), ("1:2:3:4", "START:STOP"),
])
def test_bad_ranges(text, message):
    with pytest.raises(UsageError, match=message):
        parse_resolutions(text)


def test_cli_sweep_json_and_bad_input(tmp_path):
    target = str(FIXTURES / "vgg16.py")
    done = run("sweep", target, "--res", "8,32", "--format", "json")
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert [r["runs"] for r in data["rows"]] == [False, True]
    assert data["rows"][1]["b_min_index"] == 8 and "productive range" in data["summary"]
    for args, message in ((["--res", "64:16"], "backwards"), (["--res", "1:5000"], "at most"),
                          (["--res", ""], "empty"),
                          (["--res", "16,32", "--object-size", "24"], "larger than the smallest"),
                          (["--res", "32", "--object-size", "0"], "positive"),
                          (["--res", "32", "--object-size", "p9=8"], "names no output")):
        done = run("sweep", target, *args)
        assert done.code == 2 and done.out == "", args
        assert len(done.err.strip().splitlines()) == 1 and message in done.err, done.err


def test_an_incomplete_analysis_is_marked_and_never_productive():
    class Unknown(nn.Module):
        def forward(self, x):
            return torch.fft.fft2(x).real  # mixes every position: rfalint does not model it

    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Unknown(), nn.Conv2d(3, 3, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    result = sweep(net, 3, 2, [2, 4], "net")
    assert [row.complete for row in result.rows] == [False, False]
    assert [row.productive for row in result.rows] == [False, False]
    known = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    assert [row.productive for row in sweep(known, 3, 2, [2, 4], "net").rows] == [False, True]


def test_cli_sweep_text_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "sweep.png"
    done = run("sweep", str(FIXTURES / "resnet18.py"), "--res", "32:256:x2", "--plot", str(plot))
    assert done.code == 0, done.err
    assert "productive range" in done.out and "128..256 px" in done.out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_cli_sweep_captures_once_per_shape_behaviour(monkeypatch):
    """The command runs the model only for the sweep's own captures (the input channels are
    corrected on them when the first conv does not read the input): 16 px collapses, 32 px
    is captured, 48 px replays the 32 px capture."""
    import rfalint.capture.tracer as tracer
    shapes = []
    real = tracer._run

    def counted(index, shape, mode, *args, **kwargs):
        shapes.append(shape)
        return real(index, shape, mode, *args, **kwargs)

    monkeypatch.setattr(tracer, "_run", counted)
    done = run("sweep", str(FIXTURES / "vgg11.py"), "--res", "16,32,48", "--format", "json")
    assert done.code == 0, done.err
    assert shapes == [(3, 16, 16), (3, 16, 16), (3, 32, 32)]  # 16 px: meta, then fake
    data = json.loads(done.out)
    assert (data["captures"], data["replays"]) == (2, 1)
    assert [row["runs"] for row in data["rows"]] == [False, True, True]


class TopDown(nn.Module):
    """An FPN top-down step with scale_factor=2: at sizes not divisible by the stride the
    upsampled map does not match the lateral one and PyTorch raises."""

    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.c4 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        c3 = self.c3(x)
        return c3 + nn.functional.interpolate(self.c4(c3), scale_factor=2.0)


def test_a_size_where_the_forward_fails_is_a_row_not_the_end_of_the_sweep(tmp_path):
    result = sweep(TopDown(), 3, 2, [64, 100, 128], "fpn")
    assert [row.runs for row in result.rows] == [True, False, True]
    failed = result.rows[1]
    assert not failed.analysed and not failed.collapsed and "RuntimeError" in failed.error
    with pytest.raises(ModelError):  # runs at no size: an error, not a table
        sweep(nn.Sequential(nn.Conv2d(5, 4, 3)), 3, 2, [16, 32], "broken")
    model = tmp_path / "fpn.py"
    model.write_text("from test_sweep import TopDown\n\ndef net():\n    return TopDown()\n")
    done = run("sweep", f"{model}:net", "--res", "64,100")
    assert done.code == 0, done.err
    assert "no: fails" in done.out and "100 px: the model's forward raised" in done.out
