"""The training-time Monitor, the Lightning callback (with a stand-in ``lightning``
module, since Lightning is not a dependency), layer sets and float32 compensated sums."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import rfalint
from rfalint.errors import UsageError
from rfalint.saturation import Monitor
from rfalint.saturation.run import measured_layers
from rfalint.saturation.stats import CovarianceAccumulator
from conftest import analyse_fixture
from saturation_reference import MODEL, reference

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["stem", "conv", "down", "short", "fc"]


@pytest.fixture
def model(tmp_path):
    (tmp_path / "small.py").write_text(MODEL)
    torch.manual_seed(0)
    return rfalint.load_model(str(tmp_path / "small.py")).model.eval()


def batches(count: int = 6, size: int = 8) -> list[torch.Tensor]:
    rng = np.random.default_rng(4)
    return [torch.from_numpy(rng.normal(size=(size, 3, 8, 8)).astype(np.float32))
            for _ in range(count)]


def test_monitor_equals_the_reference_and_counts_every_kth_pass(model):
    data = batches()
    with Monitor(model) as monitor:
        for batch in data:
            model(batch)
        report = monitor.report()
    assert list(report.layers) == NAMES  # the order the layers first ran
    assert {n: s.intrinsic_dim for n, s in report.layers.items()} == \
        reference(model, torch.cat(data), NAMES)
    with Monitor(model, every=3) as monitor:
        for batch in data:
            model(batch)
        every = monitor.report()
    assert {n: s.intrinsic_dim for n, s in every.layers.items()} == \
        reference(model, torch.cat([data[0], data[3]]), NAMES)
    assert every.layers["fc"].observations == 16


def test_pause_reset_and_training_passes(model):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, layers=["stem", "fc"]) as monitor:
        for batch in batches(3):
            opt.zero_grad()
            model(batch).square().mean().backward()  # hooks leave autograd alone
            opt.step()
        with monitor.paused():
            model(batches(1)[0])
        assert monitor.report().layers["fc"].observations == 24
        monitor.reset()
        model(batches(1, size=3)[0])  # 3 observations of fc's 5 features: undefined
        report = monitor.report()
    assert report.layers["stem"].observations == 3 * 64
    assert report.layers["fc"].saturation is None
    metrics = report.metrics()
    assert set(metrics) == {"saturation/stem", "saturation/s_mu", "saturation/tail_layers"}
    assert "s_mu" in str(report)
    # Removed on exit: further passes record nothing, and report needs an attached monitor.
    with pytest.raises(UsageError, match="not attached"):
        monitor.report()


def test_monitor_layer_sets(model):
    assert list(Monitor(model, "main-path", input_shape=(3, 8, 8)).modules) == \
        ["stem", "conv", "down"]
    with pytest.raises(UsageError, match="input_shape"):
        Monitor(model, "main-path")
    with pytest.raises(UsageError, match="'nope' is not a conv or linear"):
        Monitor(model, ["nope"])
    with pytest.raises(UsageError, match="every"):
        Monitor(model, every=0)


def test_resnet18_main_path_is_17_convs_of_3904_channels():
    # The dissertation's ResNet18 figures count the main-path convs only.
    analysis = analyse_fixture("resnet18", (3, 32, 32))
    nodes = measured_layers(analysis, "main-path")
    assert len(nodes) == 17
    assert sum(node.module.out_channels for node in nodes) == 3904
    assert len(measured_layers(analysis, "all")) == 21  # + 3 shortcut convs + the classifier


def test_float32_compensated_sums_against_numpy():
    # 400 batches with a mean 30x the spread: the float32 sums of a device without
    # float64 stay within float32 round-off of numpy's float64 covariance.
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(64, 6)) * 0.5 + 15.0 for _ in range(400)]
    exact = np.cov(np.concatenate(chunks), rowvar=False, bias=True)
    acc = CovarianceAccumulator(6, float64=False)
    for chunk in chunks:
        acc.update(torch.from_numpy(chunk).float(), dim=-1)
    assert acc.gram.dtype == torch.float32
    error = np.abs(acc.moments().covariance().numpy() - exact).max() / np.abs(exact).max()
    assert error < 1e-5


def fake_lightning(monkeypatch):
    """A stand-in ``lightning.pytorch`` with the one name the callback imports."""
    class Callback:
        pass

    package, pytorch = types.ModuleType("lightning"), types.ModuleType("lightning.pytorch")
    pytorch.Callback = Callback
    package.pytorch = pytorch
    monkeypatch.setitem(sys.modules, "lightning", package)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", pytorch)
    monkeypatch.delitem(sys.modules, "rfalint.saturation.lightning", raising=False)
    return importlib.import_module("rfalint.saturation.lightning"), Callback


def test_lightning_callback_logs_each_training_epoch(model, monkeypatch):
    module, base = fake_lightning(monkeypatch)
    callback = module.SaturationCallback()
    assert isinstance(callback, base)
    logged = []
    model.log_dict = logged.append  # what a LightningModule offers
    data = batches(4)
    for epoch in range(2):
        callback.on_train_epoch_start(None, model)
        for batch in data[:3]:
            model(batch)
        callback.on_validation_epoch_start(None, model)
        model(data[3])  # validation: not recorded
        callback.on_validation_epoch_end(None, model)
        callback.on_train_epoch_end(None, model)
    assert len(logged) == 2 and logged[0] == logged[1]
    ks = reference(model, torch.cat(data[:3]), NAMES)
    assert logged[0]["saturation/stem"] == ks["stem"] / 8
    assert callback.last.layers["fc"].observations == 24
    callback.teardown(None, model, "fit")


def test_lightning_module_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    monkeypatch.delitem(sys.modules, "rfalint.saturation.lightning", raising=False)
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("rfalint.saturation.lightning")


def test_example_logs_each_epoch():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "monitor_training.py"),
                           "--epochs", "2", "--samples", "96"], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and all("s_mu" in line for line in lines)
