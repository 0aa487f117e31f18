"""``rfalint saturation`` end to end on a tiny model, and its one-line errors (exit 2)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import rfalint
from clihelp import run

MODEL = textwrap.dedent('''
    import torch.nn as nn


    def tiny(width=8):
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))
''')


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(MODEL)
    return str(path)


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(24, 3, 8, 8)).astype(np.float32))
    return str(path)


def saturation(model, *args):
    return run("saturation", model, "--res", "8", *args)


def test_json_report(model, npy):
    result = saturation(model, "--data", npy, "--format", "json", "--batch-size", "5")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    names = [layer["name"] for layer in report["layers"]]
    analysis = rfalint.analyze(rfalint.load_model(model).model, (3, 8, 8))
    graph_names = [n.name for n in analysis.graph if n.op in ("Conv2d", "Linear")]
    assert names == graph_names == ["0", "2", "4", "8"]
    assert report["data"]["samples"] == 24 and not report["data"]["smoke_test"]
    assert report["layers"][0]["observations"] == 24 * 64
    values = [layer["saturation"] for layer in report["layers"]]
    assert report["s_mu"] == pytest.approx(sum(values) / len(values))
    for layer in report["layers"]:
        assert layer["saturation"] == layer["intrinsic_dim"] / layer["channels"]
    assert report["tails"]["verdict"] in ("agree", "disagree")
    assert report["rf_tail"] == [n for n, layer in zip(names, report["layers"])
                                 if layer["in_rf_tail"]]
    width = report["width"]
    assert width["fits"] or width["command"].startswith(f"rfalint fix {model} --res 8 ")


def test_text_report_of_random_data_is_a_smoke_test(model):
    result = saturation(model, "--data", "random", "--max-samples", "16", "--arg", "width=4")
    assert result.code == 0, result.err
    assert "SMOKE TEST" in result.out and "s_mu" in result.out and "RF tail" in result.out
    assert "no --weights" in result.out
    if "apply it with" in result.out:
        assert "--arg width=4 --strategy width --factor" in result.out


def test_too_few_samples_marks_layers_undefined(model):
    result = saturation(model, "--data", "random", "--max-samples", "1", "--format", "json")
    report = json.loads(result.out)
    head = report["layers"][-1]  # Linear: one observation per sample, 4 features
    assert head["saturation"] is None and head["intrinsic_dim"] is None
    assert any("undefined" in w and "at least 4 samples" in w for w in report["warnings"])


def test_weights_are_loaded_and_ddp_prefixes_accepted(model, npy, tmp_path):
    net = rfalint.load_model(model).model
    for p in net.parameters():
        torch.nn.init.constant_(p, 0.0)  # constant outputs everywhere: k = 0 in every layer
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "ckpt.pt")
    result = saturation(model, "--data", npy, "--weights", str(tmp_path / "ckpt.pt"),
                        "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert all(layer["intrinsic_dim"] == 0 for layer in report["layers"])
    assert report["weights"].endswith("ckpt.pt")


def one_line_error(result, *fragments):
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfalint: error:"), result.err
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_and_empty_data_folder(model, tmp_path):
    one_line_error(saturation(model, "--data", str(tmp_path / "nope")), "no such file")
    (tmp_path / "empty").mkdir()
    one_line_error(saturation(model, "--data", str(tmp_path / "empty")), "no images")


def test_only_unreadable_images(model, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"junk")
    one_line_error(saturation(model, "--data", str(tmp_path / "imgs")), "could be read",
                   "1 unreadable")


def test_some_unreadable_images_are_skipped_with_a_warning(model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (10, 9), (40 * i, 200, 3 * i)).save(folder / f"{i}.png")
    (folder / "bad.jpg").write_bytes(b"junk")
    result = saturation(model, "--data", str(folder), "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["data"]["samples"] == 3
    assert any("skipped 1 unreadable image" in w and "bad.jpg" in w for w in report["warnings"])


def test_wrong_tensor_shape(model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 9, 9), dtype=np.float32))
    one_line_error(saturation(model, "--data", str(tmp_path / "x.npy")), "(4, 3, 9, 9)")


@pytest.mark.parametrize("delta", ["0", "1.5", "-1", "nan", "abc"])
def test_delta_outside_unit_interval(model, delta):
    one_line_error(saturation(model, "--data", "random", "--delta", delta), "--delta")


def test_delta_one_is_allowed(model):
    assert saturation(model, "--data", "random", "-n", "8", "--delta", "1").code == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(model):
    one_line_error(saturation(model, "--data", "random", "--device", "cuda"), "no CUDA GPU")


def test_bad_device_batch_size_and_format(model):
    one_line_error(saturation(model, "--data", "random", "--device", "tpu"), "--device")
    one_line_error(saturation(model, "--data", "random", "--batch-size", "0"), "--batch-size")
    one_line_error(saturation(model, "--data", "random", "--format", "xml"), "--format")


def test_weights_that_do_not_match(model, tmp_path):
    other = rfalint.load_model(model, {"width": 6}).model.state_dict()
    other["extra.weight"] = torch.zeros(1)
    torch.save(other, tmp_path / "other.pt")
    one_line_error(saturation(model, "--data", "random", "--weights", str(tmp_path / "other.pt")),
                   "do not match", "unexpected", "other shapes")
    one_line_error(saturation(model, "--data", "random", "--weights", str(tmp_path / "no.pt")),
                   "no such file")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    one_line_error(saturation(model, "--data", "random", "--weights", str(tmp_path / "junk.pt")),
                   "weights_only=True")


def test_mean_without_std(model, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    one_line_error(saturation(model, "--data", str(tmp_path), "--mean", "0.5,0.5,0.5"),
                   "--mean and --std")
    one_line_error(saturation(model, "--data", str(tmp_path), "--mean", "x", "--std", "1"),
                   "--mean")


def test_layer_set_is_reported(model, npy):
    result = saturation(model, "--data", npy, "--layers", "main-path", "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["layer_set"] == "main-path"
    assert [layer["name"] for layer in report["layers"]] == ["0", "2", "4"]  # no classifier
    text = saturation(model, "--data", npy, "--layers", "main-path")
    assert "layers: the main path's convs (3)" in text.out and "--layers main-path" in text.out


def test_bad_layer_set_and_workers(model):
    one_line_error(saturation(model, "--data", "random", "--layers", "some"), "--layers")
    one_line_error(saturation(model, "--data", "random", "--workers", "-1"), "--workers")
