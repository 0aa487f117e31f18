"""Every ``--data`` source: image folders, .npy/.npz/.pt files and random smoke data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rfalint.errors import LoadError, UsageError
from rfalint.saturation.data import ImageFolderSource, TensorSource, open_source


def save_image(path, width, height, color=(255, 0, 0), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), color if mode == "RGB" else color[0]).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    save_image(tmp_path / "cat" / "a.png", 20, 10)
    save_image(tmp_path / "cat" / "b.jpg", 8, 8, (0, 255, 0))
    save_image(tmp_path / "dog" / "c.bmp", 5, 30, (0, 0, 255))
    (tmp_path / "dog" / "labels.txt").write_text("not an image")
    source = open_source(str(tmp_path), (3, 8, 8))
    assert isinstance(source, ImageFolderSource) and len(source) == 3
    assert "2 class folders" in source.description
    batch = source.load(0, 3)
    assert batch.shape == (3, 3, 8, 8) and batch.dtype == torch.float32
    assert torch.allclose(batch[0, :, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    assert batch[1, 1].min() > 0.9 and batch[2, 2].min() > 0.9


def test_flat_folder_resizes_then_centre_crops(tmp_path):
    # 16x8 image, left half black, right half white: scaled to cover 8x8 it stays 16x8,
    # the centre crop keeps columns 4..11, so 4 black columns then 4 white ones.
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, 8:] = 255
    Image.fromarray(pixels).save(tmp_path / "half.png")
    source = open_source(str(tmp_path), (3, 8, 8))
    assert "flat folder" in source.description
    image = source.load(0, 1)[0, 0]
    assert torch.all(image[:, :4] == 0) and torch.all(image[:, 4:] == 1)


def test_grayscale_model_and_normalisation(tmp_path):
    save_image(tmp_path / "g.png", 6, 6, (128,), mode="L")
    batch = open_source(str(tmp_path), (1, 4, 4), mean=[0.5], std=[0.25]).load(0, 1)
    assert batch.shape == (1, 1, 4, 4)
    assert torch.allclose(batch, torch.full_like(batch, (128 / 255 - 0.5) / 0.25), atol=1e-6)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    save_image(tmp_path / "ok.png", 8, 8)
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    source = open_source(str(tmp_path), (3, 8, 8))
    batch = source.load(0, len(source))
    assert batch.shape[0] == 1
    assert len(source.unreadable) == 1 and "broken.png" in source.unreadable[0]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: p, "no images"),
])
def test_missing_or_empty_folder(tmp_path, make, message):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=message):
        open_source(str(make(tmp_path)), (3, 8, 8))


def test_image_folder_needs_a_2d_model(tmp_path):
    save_image(tmp_path / "a.png", 8, 8)
    with pytest.raises(UsageError, match="2-D"):
        open_source(str(tmp_path), (3, 8))


def test_npy_channels_first_is_memory_mapped(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    source = open_source(str(tmp_path / "x.npy"), (3, 4, 4))
    assert isinstance(source, TensorSource) and isinstance(source.array, np.memmap)
    np.testing.assert_array_equal(source.load(1, 4).numpy(), data[1:4])


def test_channels_last_is_detected_and_explained(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", data)
    source = open_source(str(tmp_path / "x.npy"), (3, 4, 4))
    assert any("channels last" in note for note in source.notes)
    assert any("uint8" in note for note in source.notes)
    expected = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(source.load(0, 5), expected)


def test_wrong_shape_is_one_line(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 3, 28, 28), dtype=np.float32))
    with pytest.raises(UsageError) as info:
        open_source(str(tmp_path / "x.npy"), (3, 32, 32))
    message = str(info.value)
    assert "\n" not in message and "(5, 3, 28, 28)" in message and "(N, 3, 32, 32)" in message


def test_npz_key_selection(tmp_path):
    x = np.ones((4, 1, 2, 2), dtype=np.float32)
    np.savez(tmp_path / "one.npz", whatever=x)
    assert open_source(str(tmp_path / "one.npz"), (1, 2, 2)).load(0, 4).shape == (4, 1, 2, 2)
    np.savez(tmp_path / "xy.npz", images=x, labels=np.arange(4))
    source = open_source(str(tmp_path / "xy.npz"), (1, 2, 2))
    assert any("'images'" in note for note in source.notes)
    np.savez(tmp_path / "ab.npz", a=x, b=x * 2)
    with pytest.raises(UsageError, match="several arrays"):
        open_source(str(tmp_path / "ab.npz"), (1, 2, 2))
    picked = open_source(f"{tmp_path / 'ab.npz'}:b", (1, 2, 2))
    assert picked.load(0, 1).max() == 2
    with pytest.raises(UsageError, match="no array 'c'"):
        open_source(f"{tmp_path / 'ab.npz'}:c", (1, 2, 2))


def test_pt_tensor_dict_and_pair(tmp_path):
    x = torch.randn(6, 2, 3, 3)
    torch.save(x, tmp_path / "t.pt")
    assert torch.equal(open_source(str(tmp_path / "t.pt"), (2, 3, 3)).load(0, 6), x)
    torch.save({"inputs": x, "targets": torch.arange(6)}, tmp_path / "d.pt")
    assert torch.equal(open_source(str(tmp_path / "d.pt"), (2, 3, 3)).load(2, 4), x[2:4])
    torch.save((x, torch.arange(6)), tmp_path / "pair.pt")
    assert torch.equal(open_source(str(tmp_path / "pair.pt"), (2, 3, 3)).load(0, 6), x)


def test_unreadable_tensor_file_is_a_load_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(LoadError, match="cannot read"):
        open_source(str(tmp_path / "bad.pt"), (3, 4, 4))


def test_random_is_labelled_and_independent_of_batching():
    source = open_source("random", (3, 4, 4), max_samples=10)
    assert source.smoke_test and "smoke test" in source.description and len(source) == 10
    whole = source.load(0, 10)
    assert torch.equal(whole, torch.cat([source.load(0, 3), source.load(3, 10)]))


def test_max_samples_truncates(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((9, 1, 2, 2), dtype=np.float32))
    source = open_source(str(tmp_path / "x.npy"), (1, 2, 2), max_samples=4)
    assert len(source) == 4 and any("first 4 of 9" in note for note in source.notes)
    with pytest.raises(UsageError, match="max_samples must be positive"):
        open_source("random", (1, 2, 2), max_samples=0)


def test_unknown_data_kind(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(UsageError, match="expects an image folder"):
        open_source(str(tmp_path / "x.csv"), (1, 2, 2))
