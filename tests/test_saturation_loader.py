"""``--data`` loader factories, DataLoaders in the API, parallel built-in sources and
torchrun sharding: values equal the single-process float64 reference; bad input exits 2."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import rfalint
from rfalint.cli import flag
from clihelp import run
from rfalint.errors import LoadError, UsageError
from rfalint.saturation import as_source, open_source, run_saturation
from rfalint.saturation.data import RandomSource, default_workers
from saturation_reference import MODEL, reference

NAMES = ["stem", "conv", "down", "short", "fc"]

LOADERS = textwrap.dedent('''
    import os

    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset, TensorDataset


    def data():
        return torch.from_numpy(
            np.random.default_rng(3).normal(size=(40, 3, 8, 8)).astype(np.float32))


    def val_loader():
        return DataLoader(TensorDataset(data(), torch.arange(40)), batch_size=7)


    def dict_batches():
        x = data()
        return [{"image": x[i:i + 10], "label": torch.zeros(10)} for i in range(0, 40, 10)]


    def broken():
        raise ValueError("no dataset here")


    def not_iterable():
        return 42


    def bad_shape():
        x = data()
        return [x[:8], x[8:16, :, :4, :4]]


    def integers():
        return [(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4))]


    class Crash(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            os._exit(3)  # the worker process dies without a Python exception


    def crashing():
        return DataLoader(Crash(), batch_size=4, num_workers=1)
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """small.py (model), loaders.py (factories), w.pt (weights); cwd is the folder."""
    (tmp_path / "small.py").write_text(MODEL)
    (tmp_path / "loaders.py").write_text(LOADERS)
    torch.manual_seed(0)
    model = rfalint.load_model(str(tmp_path / "small.py")).model
    torch.save(model.state_dict(), tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path, model


def data() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(3).normal(size=(40, 3, 8, 8)).astype(np.float32))


def saturation(*args):
    return run("saturation", "small.py", "--res", "8", "--weights", "w.pt", "--device", "cpu",
               "--format", "json", *args)


def ks(report) -> dict[str, int]:
    return {layer["name"]: layer["intrinsic_dim"] for layer in report["layers"]}


@pytest.mark.parametrize("factory", ["loaders.py:val_loader", "loaders:dict_batches"])
def test_factory_matches_the_float64_reference(project, factory):
    _, model = project
    result = saturation("--data", factory)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["data"]["kind"] == "loader" and report["data"]["samples"] == 40
    assert factory in report["data"]["description"]
    assert ks(report) == reference(model, data(), NAMES)


def test_api_takes_a_dataloader_and_the_main_path(project):
    _, model = project
    loader = DataLoader(TensorDataset(data()), batch_size=16)
    result = run_saturation(model, (3, 8, 8), loader, device="cpu")
    assert {layer.name: layer.stats.intrinsic_dim for layer in result.layers} == \
        reference(model, data(), NAMES)
    main = run_saturation(model, (3, 8, 8), loader, device="cpu", layers="main-path")
    assert main.layer_set == "main-path"
    assert [layer.name for layer in main.layers] == ["stem", "conv", "down"]


def test_image_folder_with_workers_matches_the_reference(project):
    root, model = project
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, size=(10, 9, 3), dtype=np.uint8)).save(
            folder / f"{i:02}.png")
    (folder / "13b.png").write_bytes(b"not a png")  # read by the second worker's batch
    result = saturation("--data", "images", "--workers", "2", "--batch-size", "5")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["data"]["samples"] == 24
    assert any("skipped 1 unreadable image" in w and "13b.png" in w for w in report["warnings"])
    pixels = open_source(str(folder), (3, 8, 8)).load(0, 25)
    assert ks(report) == reference(model, pixels, NAMES)


def one_line_error(result, *fragments):
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfalint: error:"), result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_factory_that_raises(project):
    one_line_error(saturation("--data", "loaders.py:broken"), "--data loaders.py:broken",
                   "the factory raised", "loaders.py:", "ValueError: no dataset here")


def test_factory_that_returns_nothing_iterable(project):
    one_line_error(saturation("--data", "loaders.py:not_iterable"), "loaders.py:not_iterable",
                   "returned int", "not an iterable")


def test_batch_that_does_not_fit_the_model(project):
    one_line_error(saturation("--data", "loaders.py:bad_shape"), "loaders.py:bad_shape",
                   "batch 2", "(8, 3, 4, 4)", "(N, 3, 8, 8)")


def test_integer_batches_are_refused(project):
    one_line_error(saturation("--data", "loaders.py:integers"), "batch 1", "torch.uint8")


def test_missing_factory(project):
    one_line_error(saturation("--data", "loaders.py:nope"), "no attribute 'nope'")
    one_line_error(saturation("--data", "nomodule:make"), "no module named 'nomodule'")


def test_worker_crash_in_the_users_loader_is_reported(project):
    one_line_error(saturation("--data", "loaders.py:crashing"), "loaders.py:crashing",
                   "batch 1 could not be loaded", "worker")


class KilledInWorker(RandomSource):
    def load(self, start, stop):
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().load(start, stop)


def test_worker_crash_in_a_builtin_source_is_reported():
    source = KilledInWorker("random", "killer", 8, (3, 4, 4))
    with pytest.raises(LoadError, match="reading failed.*workers 0") as caught:
        list(source.batches(4, workers=1))
    assert "rerun with --workers 0" in caught.value.render(flag)  # as the CLI prints it


def test_builtin_shards_are_disjoint_complete_and_ordered():
    source = open_source("random", (2, 3, 3), max_samples=23)
    whole = torch.cat(list(source.batches(4)))
    parts = [torch.cat(list(source.batches(4, rank, 3, workers=1))) for rank in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    assert [len(p) for p in parts] == [7, 8, 8]


def test_loader_shards_round_robin_or_presharded():
    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    loader = DataLoader(TensorDataset(x), batch_size=3)
    source = as_source(loader, (1, 1, 1))
    seen = [torch.cat(list(source.batches(3, rank, 2))).flatten().tolist() for rank in range(2)]
    assert sorted(seen[0] + seen[1]) == list(range(20)) and not set(seen[0]) & set(seen[1])
    assert source.batch_count(3, 1, 2) == 3
    sampled = DataLoader(TensorDataset(x), batch_size=3,
                         sampler=DistributedSampler(TensorDataset(x), 2, 1, shuffle=False))
    assert torch.cat(list(as_source(sampled, (1, 1, 1)).batches(3, 1, 2))).numel() == 10
    shuffled = as_source(DataLoader(TensorDataset(x), batch_size=3, shuffle=True), (1, 1, 1))
    with pytest.raises(UsageError, match="shuffle=False"):
        next(shuffled.batches(3, 0, 2))
    assert len(list(shuffled.batches(3))) == 7  # one process: the order does not matter


def test_max_samples_cuts_a_loader():
    loader = DataLoader(TensorDataset(torch.zeros(20, 1, 2, 2)), batch_size=6)
    batches = list(as_source(loader, (1, 2, 2), max_samples=9).batches(6))
    assert [len(b) for b in batches] == [6, 3]


def test_default_workers(monkeypatch):
    monkeypatch.setattr("rfalint.saturation.data.available_cpus", lambda: 16)
    assert default_workers(decodes=False) == 0
    assert default_workers(decodes=True) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers(decodes=True) == 3


def test_api_rejects_what_is_not_data():
    with pytest.raises(UsageError, match="DataLoader"):
        as_source(42, (3, 8, 8))


def test_tensor_file_workers_reopen_the_file(tmp_path):
    import pickle

    x = np.random.default_rng(2).normal(size=(10, 2, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    source = open_source(str(tmp_path / "x.npy"), (2, 3, 3))
    copy = pickle.loads(pickle.dumps(source))  # what a spawned worker receives
    assert copy.array is None
    np.testing.assert_array_equal(copy.load(2, 5).numpy(), x[2:5])
    assert torch.equal(torch.cat(list(source.batches(4, workers=2))), torch.from_numpy(x))
