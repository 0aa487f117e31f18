"""Data sources for ``rfalint saturation``: image folders, tensor files, random smoke data.

Every source is indexable: ``len(source)`` samples, ``source.load(start, stop)`` returns
one float32 batch ``(B, C, *spatial)`` matching the model input. That lets each
``torch.distributed`` rank stream a contiguous shard of the same sample order, so one and
N processes see exactly the same samples. Nothing is read before it is needed, except an
``.npz`` array (zip members cannot be memory-mapped); ``.npy`` and ``.pt`` files are
memory-mapped, so memory stays constant in the dataset size.
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rfalint.errors import LoadError, UsageError, first_line

RANDOM = "random"
RANDOM_DEFAULT_SAMPLES = 512
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth")
# Names tried, in order, to pick the inputs out of an .npz / a dict saved with torch.save.
INPUT_KEYS = ("x", "inputs", "input", "images", "data")
# Pillow mode per channel count: the model's input channels decide how images are read.
IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass
class Source(ABC):
    """An indexable dataset of model inputs."""

    kind: str
    description: str
    size: int
    shape: tuple[int, ...]  # (C, *spatial) of one sample
    notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # skipped samples, counted, not fatal

    @property
    def smoke_test(self) -> bool:
        return self.kind == RANDOM

    def __len__(self) -> int:
        return self.size

    @abstractmethod
    def load(self, start: int, stop: int) -> torch.Tensor:
        """A float32 batch of samples ``start:stop``; unreadable ones are dropped and
        listed in ``unreadable``."""


@dataclass
class RandomSource(Source):
    """Standard-normal inputs, seeded per sample so every sharding sees the same data."""

    seed: int = 0

    def load(self, start: int, stop: int) -> torch.Tensor:
        gen = torch.Generator()
        batch = torch.empty((stop - start, *self.shape))
        for row, index in enumerate(range(start, stop)):
            gen.manual_seed(self.seed * 1_000_003 + index)
            batch[row] = torch.randn(self.shape, generator=gen)
        return batch


@dataclass
class TensorSource(Source):
    """Samples of an array or tensor (in memory or memory-mapped), sample axis first."""

    array: object = None  # np.ndarray | torch.Tensor
    channels_last: bool = False
    scale: float = 1.0

    def load(self, start: int, stop: int) -> torch.Tensor:
        rows = self.array[start:stop]
        if not isinstance(rows, torch.Tensor):
            rows = torch.from_numpy(np.array(rows))  # a copy: memory maps are read-only
        if self.channels_last:
            rows = rows.movedim(-1, 1)
        rows = rows.to(torch.float32)
        return rows * self.scale if self.scale != 1.0 else rows.contiguous()


@dataclass
class ImageFolderSource(Source):
    """Image files under a folder (class subfolders or flat), resized and centre-cropped."""

    files: list[Path] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def load(self, start: int, stop: int) -> torch.Tensor:
        rows = []
        for path in self.files[start:stop]:
            image = self._read(path)
            if image is not None:
                rows.append(image)
        if not rows:
            return torch.empty((0, *self.shape))
        batch = torch.from_numpy(np.stack(rows)).movedim(-1, 1).float() / 255.0
        if self.mean is not None:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            batch = (batch - mean) / std
        return batch

    def _read(self, path: Path) -> np.ndarray | None:
        from PIL import Image

        channels, height, width = self.shape
        try:
            with Image.open(path) as img:
                img = img.convert(IMAGE_MODES[channels])
                # Resize so the image covers H x W (aspect kept), then centre-crop.
                scale = max(height / img.height, width / img.width)
                size = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR)
                left, top = (img.width - width) // 2, (img.height - height) // 2
                img = img.crop((left, top, left + width, top + height))
                pixels = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # Pillow raises OSError for unidentified/truncated files, ValueError and
            # SyntaxError from some broken decoders: skip, count, never crash mid-run.
            self.unreadable.append(f"{path}: {type(exc).__name__}: {exc}")
            return None
        return pixels.reshape(height, width, channels)


def open_source(spec: str, input_shape: tuple[int, ...], max_samples: int | None = None,
                mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> Source:
    """``--data`` value -> a Source for inputs of shape ``input_shape`` = (C, *spatial).

    ``spec`` is ``random``, an image folder, or a ``.npy``/``.npz``/``.pt`` file; for
    ``.npz`` and ``.pt`` dicts ``file.npz:KEY`` picks the array.
    """
    if max_samples is not None and max_samples <= 0:
        raise UsageError(f"{{max_samples}} must be positive, got {max_samples}", options=True)
    if (mean is None) != (std is None):
        raise UsageError("{mean} and {std} go together", options=True)
    if spec == RANDOM:
        size = max_samples or RANDOM_DEFAULT_SAMPLES
        return RandomSource(RANDOM, f"random N(0, 1) inputs, {size} samples (smoke test only)",
                            size, tuple(input_shape))
    path, key = _split_key(spec)
    if path.is_dir():
        source = _image_folder(path, input_shape, mean, std)
    elif path.suffix.lower() in TENSOR_SUFFIXES:
        if not path.is_file():
            raise UsageError(f"{{data}} {path}: no such file", options=True)
        source = _tensor_file(path, key, input_shape)
    elif not path.exists():
        raise UsageError(f"{{data}} {spec}: no such file or folder", options=True)
    else:
        raise UsageError(f"{{data}} expects an image folder, a .npy/.npz/.pt file or 'random', "
                         f"got {spec}", options=True)
    if mean is not None and not isinstance(source, ImageFolderSource):
        raise UsageError("{mean}/{std} apply to image folders; normalise tensor files yourself",
                         options=True)
    if max_samples is not None and max_samples < source.size:
        source.notes.append(f"using the first {max_samples} of {source.size} samples")
        source.size = max_samples
    return source


def _split_key(spec: str) -> tuple[Path, str | None]:
    """``batch.npz:images`` -> (batch.npz, "images"); a plain path has no key."""
    head, sep, key = spec.rpartition(":")
    if sep and Path(head).suffix.lower() in TENSOR_SUFFIXES and not Path(spec).exists():
        return Path(head), key
    return Path(spec), None


def _image_folder(path: Path, input_shape: tuple[int, ...], mean, std) -> ImageFolderSource:
    if len(input_shape) != 3:
        raise UsageError(f"{{data}} {path}: image folders need a model with 2-D inputs, this one "
                         f"takes {len(input_shape) - 1}-D inputs", options=True)
    channels = input_shape[0]
    if channels not in IMAGE_MODES:
        raise UsageError(f"{{data}} {path}: images have 1, 3 or 4 channels, the model takes "
                         f"{channels}", options=True)
    for name, values in (("{mean}", mean), ("{std}", std)):
        if values is not None and len(values) != channels:
            raise UsageError(f"{name} needs {channels} values (one per input channel), "
                             f"got {len(values)}", options=True)
    if std is not None and any(s <= 0 for s in std):
        raise UsageError("{std} values must be positive", options=True)
    files = sorted(p for p in _walk(path) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{{data}} {path}: no images ({', '.join(IMAGE_SUFFIXES)}) found",
                         options=True)
    classes = {f.parent for f in files}
    layout = f"{len(classes)} class folders" if path not in classes else "flat folder"
    source = ImageFolderSource(
        "images", f"{len(files)} images in {path} ({layout}), resized and centre-cropped to "
        f"{input_shape[1]}x{input_shape[2]}, scaled to [0, 1]" +
        (", normalised with --mean/--std" if mean is not None else ""),
        len(files), tuple(input_shape), files=files,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None)
    return source


def _walk(root: Path):
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in names:
            yield Path(folder) / name


def _tensor_file(path: Path, key: str | None, input_shape: tuple[int, ...]) -> TensorSource:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            loaded = np.load(path, allow_pickle=False)
        else:
            loaded = _torch_load(path)
    except Exception as exc:  # corrupt file, pickled objects, not a zip: one line
        raise LoadError(f"{{data}} {path}: cannot read: {type(exc).__name__}: "
                        f"{first_line(exc)}", options=True) from exc
    array, picked = _pick(path, loaded, key)
    notes = [picked] if picked else []
    return _fit(path, array, input_shape, notes)


def _torch_load(path: Path):
    """Memory-mapped where the format allows it (the zip format, torch.save's default)."""
    return torch.load(path, map_location="cpu", weights_only=True,
                      mmap=zipfile.is_zipfile(path))


def _pick(path: Path, loaded, key: str | None) -> tuple[object, str]:
    """The input array out of what a file holds, and a note saying how it was chosen."""
    if isinstance(loaded, (np.ndarray, torch.Tensor)):
        if key is not None:
            raise UsageError(f"{{data}} {path}:{key}: the file holds a single array, drop ':{key}'",
                             options=True)
        return loaded, ""
    if isinstance(loaded, (list, tuple)) and loaded and isinstance(loaded[0], torch.Tensor):
        return loaded[0], f"{path} holds a {type(loaded).__name__}; using its first element"
    mapping = dict(loaded.items()) if hasattr(loaded, "items") else None
    if hasattr(loaded, "files"):  # NpzFile: keys without reading every array
        mapping = {k: None for k in loaded.files}
    if mapping is None:
        raise UsageError(f"{{data}} {path}: expected an array, a tensor or a dict of them, got "
                         f"{type(loaded).__name__}", options=True)
    keys = list(mapping)
    if key is not None:
        if key not in mapping:
            raise UsageError(f"{{data}} {path}: no array {key!r} (has: {', '.join(keys)})",
                             options=True)
        return loaded[key], ""
    if len(keys) == 1:
        return loaded[keys[0]], ""
    for name in INPUT_KEYS:
        if name in mapping:
            return loaded[name], f"{path}: using array {name!r} of {', '.join(keys)}"
    raise UsageError(f"{{data}} {path}: several arrays ({', '.join(keys)}); pick one with "
                     f"{path}:KEY", options=True)


def _fit(path: Path, array, input_shape: tuple[int, ...], notes: list[str]) -> TensorSource:
    """Check the array against the model input; accept channels-last and explain it."""
    shape = tuple(array.shape)
    channels, spatial = input_shape[0], tuple(input_shape[1:])
    first, last = (channels, *spatial), (*spatial, channels)
    dtype = array.dtype
    is_float = dtype.is_floating_point if isinstance(array, torch.Tensor) \
        else np.issubdtype(dtype, np.floating)
    is_int = (not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool) \
        if isinstance(array, torch.Tensor) else np.issubdtype(dtype, np.integer)
    if not (is_float or is_int):
        raise UsageError(f"{{data}} {path}: arrays of {dtype} cannot be model inputs; "
                         "use floats or integers", options=True)
    axes = "".join("DHW"[3 - len(spatial):])
    if len(shape) == len(first) + 1 and shape[1:] == first:
        channels_last = False
    elif len(shape) == len(last) + 1 and shape[1:] == last:
        channels_last = True
        notes.append(f"{path}: shape {shape} read as (N, {', '.join(axes)}, C) "
                     f"(channels last) and moved to (N, C, {', '.join(axes)})")
    else:
        raise UsageError(
            f"{{data}} {path}: shape {shape} does not fit the model input {first}: expected "
            f"(N, {', '.join(map(str, first))}) or (N, {', '.join(map(str, last))}); "
            "check {res} and {in_channels}", options=True)
    if shape[0] == 0:
        raise UsageError(f"{{data}} {path}: holds no samples (shape {shape})", options=True)
    scale = 1.0
    if dtype == (torch.uint8 if isinstance(array, torch.Tensor) else np.uint8):
        scale = 1 / 255
        notes.append(f"{path}: uint8 values scaled to [0, 1]")
    kind = "tensors"
    return TensorSource(kind, f"{shape[0]} samples from {path} ({dtype})", shape[0],
                        input_shape, notes, array=array, channels_last=channels_last,
                        scale=scale)
