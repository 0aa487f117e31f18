"""Data sources for ``rfalint saturation``: the user's own loader, image folders, tensor
files, random smoke data (docs/method.md §7).

Every source yields float32 batches ``(B, C, *spatial)`` matching the model input through
:meth:`Source.batches`, given this process's rank among ``world`` processes:

* Built-in sources are indexable (``len(source)`` samples, ``source.load(start, stop)``)
  and are read through a ``torch.utils.data.DataLoader`` whose items are whole batches
  (slices), so ``--workers N`` decode images in parallel while the batch order stays the
  sample order. Each ``torchrun`` rank reads a contiguous shard of that order; the shards
  are disjoint and together complete. ``.npy`` and ``.pt`` files are memory-mapped, so
  memory stays constant in the dataset size.
* :class:`LoaderSource` wraps what the user already has: a DataLoader or any iterable of
  batches (a tensor, or a tuple/list/dict whose first tensor is the input). Under
  ``torchrun`` a loader with a ``DistributedSampler`` is taken as sharded already;
  otherwise every rank iterates it and keeps every ``world``-th batch.
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from rfalint.errors import LoadError, UsageError, first_line
from rfalint.load import Target, describe_failure, import_attribute

RANDOM = "random"
RANDOM_DEFAULT_SAMPLES = 512
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth")
# Names tried, in order, to pick the inputs out of an .npz / a dict saved with torch.save.
INPUT_KEYS = ("x", "inputs", "input", "images", "data")
# Pillow mode per channel count: the model's input channels decide how images are read.
IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Most loader workers started by default, and how long one batch may take before a stuck
# worker is reported instead of waited for.
MAX_DEFAULT_WORKERS = 8
WORKER_TIMEOUT_S = 300


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(decodes: bool) -> int:
    """Loader processes for a built-in source: none for arrays (a slice of an array costs
    less than shipping it from another process), otherwise one per CPU this process may
    use, sharing the machine with the other ``torchrun`` ranks and leaving one CPU to the
    model, at most :data:`MAX_DEFAULT_WORKERS`."""
    if not decodes:
        return 0
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(MAX_DEFAULT_WORKERS, available_cpus() // max(ranks, 1) - 1))


def shard(size: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous slice of ``range(size)`` for ``rank`` (sizes differ by at most 1)."""
    return size * rank // world, size * (rank + 1) // world


@dataclass
class Source(ABC):
    """Model inputs, read batch by batch."""

    kind: str
    description: str
    size: int  # samples; 0 when unknown before reading (a loader)
    shape: tuple[int, ...]  # (C, *spatial) of one sample
    notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # skipped samples, counted, not fatal

    @property
    def smoke_test(self) -> bool:
        return self.kind == RANDOM

    def __len__(self) -> int:
        return self.size

    @abstractmethod
    def batches(self, batch_size: int, rank: int = 0, world: int = 1, workers: int | None = None,
                pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """This rank's float32 batches, in a deterministic order."""

    def batch_count(self, batch_size: int, rank: int = 0, world: int = 1) -> int | None:
        """How many batches :meth:`batches` yields, when known beforehand (progress)."""
        return None


class IndexedSource(Source):
    """A source whose samples can be sliced: read through a DataLoader of slices."""

    @abstractmethod
    def load(self, start: int, stop: int) -> torch.Tensor:
        """A float32 batch of samples ``start:stop``; unreadable ones are dropped and
        listed in ``unreadable``."""

    @property
    def decodes(self) -> bool:
        """Whether reading a sample costs real work (worth a worker process)."""
        return False

    def _ranges(self, batch_size: int, rank: int, world: int) -> list[tuple[int, int]]:
        start, stop = shard(self.size, rank, world)
        return [(lo, min(lo + batch_size, stop)) for lo in range(start, stop, batch_size)]

    def batch_count(self, batch_size: int, rank: int = 0, world: int = 1) -> int:
        return len(self._ranges(batch_size, rank, world))

    def batches(self, batch_size: int, rank: int = 0, world: int = 1, workers: int | None = None,
                pin_memory: bool = False) -> Iterator[torch.Tensor]:
        workers = default_workers(self.decodes) if workers is None else workers
        if workers < 0:
            raise UsageError(f"{{workers}} must be 0 or more, got {workers}", options=True)
        loader = DataLoader(_Slices(self, self._ranges(batch_size, rank, world)),
                            batch_size=None, num_workers=workers, pin_memory=pin_memory,
                            timeout=WORKER_TIMEOUT_S if workers else 0)
        items = iter(loader)
        while True:
            try:
                batch, skipped = next(items)
            except StopIteration:
                return
            except Exception as exc:
                # A worker killed by a signal, a stuck worker (timeout), an I/O error.
                hint = "; rerun with {workers} 0 to read in this process" if workers else ""
                raise LoadError(f"{{data}} {self.description}: reading failed: "
                                f"{type(exc).__name__}: {first_line(exc)}{hint}",
                                options=True) from exc
            self.unreadable.extend(skipped)
            if len(batch):
                yield batch


class _Slices(Dataset):
    """Item i is the i-th batch of a source, with the samples that could not be read: a
    worker process returns them with the batch, since its copy of the source is its own."""

    def __init__(self, source: IndexedSource, ranges: list[tuple[int, int]]):
        self.source, self.ranges = source, ranges

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[str]]:
        before = len(self.source.unreadable)
        batch = self.source.load(*self.ranges[index])
        skipped = self.source.unreadable[before:]
        del self.source.unreadable[before:]
        return batch, skipped


@dataclass
class RandomSource(IndexedSource):
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
class TensorSource(IndexedSource):
    """Samples of an array or tensor (in memory or memory-mapped), sample axis first."""

    array: object = None  # np.ndarray | torch.Tensor
    channels_last: bool = False
    scale: float = 1.0
    file: Path | None = None  # where the array was read from (reopened by worker processes)
    key: str | None = None

    def __getstate__(self) -> dict:
        """A worker started by spawn/forkserver reopens the file rather than receiving a
        pickled copy of a memory-mapped array."""
        state = dict(self.__dict__)
        if self.file is not None:
            state["array"] = None
        return state

    def load(self, start: int, stop: int) -> torch.Tensor:
        if self.array is None:
            self.array = _tensor_file(self.file, self.key, self.shape).array
        rows = self.array[start:stop]
        if not isinstance(rows, torch.Tensor):
            rows = torch.from_numpy(np.array(rows))  # a copy: memory maps are read-only
        if self.channels_last:
            rows = rows.movedim(-1, 1)
        rows = rows.to(torch.float32)
        return rows * self.scale if self.scale != 1.0 else rows.contiguous()


@dataclass
class ImageFolderSource(IndexedSource):
    """Image files under a folder (class subfolders or flat), resized and centre-cropped."""

    files: list[Path] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def decodes(self) -> bool:
        return True

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


@dataclass
class LoaderSource(Source):
    """The user's DataLoader or iterable of batches (``origin`` names it in messages)."""

    iterable: Any = None
    origin: str = ""
    max_samples: int | None = None

    def _presharded(self) -> bool:
        return isinstance(getattr(self.iterable, "sampler", None), DistributedSampler)

    def batch_count(self, batch_size: int, rank: int = 0, world: int = 1) -> int | None:
        try:
            total = len(self.iterable)
        except TypeError:
            return None
        if world == 1 or self._presharded():
            return total
        return len(range(rank, total, world))

    def batches(self, batch_size: int, rank: int = 0, world: int = 1, workers: int | None = None,
                pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Batches as the loader yields them (``batch_size``, ``workers`` and pinning are
        the loader's own); the first one that is not a model input stops the run."""
        presharded = self._presharded()
        if world > 1 and not presharded \
                and isinstance(getattr(self.iterable, "sampler", None), RandomSampler):
            raise UsageError(f"{{data}} {self.origin}: the loader shuffles, so the torchrun "
                             "ranks would not see the same batch order; build it with "
                             "shuffle=False (the order does not change saturation) or a "
                             "DistributedSampler", options=True)
        seen = 0
        try:
            items = iter(self.iterable)
        except Exception as exc:
            raise LoadError(f"{{data}} {self.origin}: iterating it raised "
                            f"{describe_failure(exc)}", options=True) from exc
        number = 0
        while self.max_samples is None or seen < self.max_samples:
            number += 1
            try:
                batch = next(items)
            except StopIteration:
                return
            except Exception as exc:  # the user's dataset raised, or a worker died
                raise LoadError(f"{{data}} {self.origin}: batch {number} could not be "
                                f"loaded: {describe_failure(exc)}", options=True) from exc
            inputs = self._inputs(batch, number)
            if self.max_samples is not None:
                inputs = inputs[:self.max_samples - seen]
            seen += len(inputs)
            if world == 1 or presharded or (number - 1) % world == rank:
                yield inputs

    def _inputs(self, batch: Any, number: int) -> torch.Tensor:
        """The model input of one batch, checked against the model's input shape."""
        where = f"{{data}} {self.origin}: batch {number}"
        if isinstance(batch, torch.Tensor):
            inputs = batch
        elif isinstance(batch, Mapping):
            inputs = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
        elif isinstance(batch, (tuple, list)):
            inputs = next((v for v in batch if isinstance(v, torch.Tensor)), None)
        else:
            raise UsageError(f"{where} is a {type(batch).__name__}; expected a tensor, or a "
                             "tuple/list/dict whose first tensor is the input", options=True)
        if inputs is None:
            raise UsageError(f"{where} is a {type(batch).__name__} holding no tensor",
                             options=True)
        expected = f"(N, {', '.join(map(str, self.shape))})"
        if inputs.dim() != len(self.shape) + 1 or tuple(inputs.shape[1:]) != self.shape:
            raise UsageError(f"{where} has shape {tuple(inputs.shape)}; the model input is "
                             f"{expected} (check {{res}} and {{in_channels}})", options=True)
        if not inputs.is_floating_point():
            raise UsageError(f"{where} holds {inputs.dtype} values; the model takes floats "
                             "(convert and scale them in the loader)", options=True)
        return inputs


def as_source(data: Any, input_shape: tuple[int, ...], origin: str | None = None,
              max_samples: int | None = None) -> Source:
    """A Source from what the Python API was given: a Source, a ``--data`` string, or a
    DataLoader / iterable of batches."""
    if isinstance(data, Source):
        return data
    if isinstance(data, (str, Path)):
        return open_source(str(data), input_shape, max_samples)
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise UsageError(f"{{data}} must be a DataLoader, an iterable of batches or a source "
                         f"string, got {type(data).__name__}", options=True)
    origin = origin or f"the {type(data).__name__} given"
    return LoaderSource("loader", _describe_loader(data, origin), 0, tuple(input_shape),
                        iterable=data, origin=origin, max_samples=max_samples)


def _describe_loader(data: Any, origin: str) -> str:
    if isinstance(data, DataLoader):
        return (f"{origin}: a DataLoader over {type(data.dataset).__name__}, batch size "
                f"{data.batch_size}, {data.num_workers} workers")
    return f"{origin}: an iterable of batches ({type(data).__name__})"


def open_factory(target: str, input_shape: tuple[int, ...],
                 max_samples: int | None = None) -> LoaderSource:
    """``--data pkg.module:factory`` / ``file.py:factory``: call the factory (no
    arguments) and use the DataLoader or iterable it returns."""
    entry, file = import_attribute(target)
    if callable(entry):
        try:
            data = entry()
        except (Exception, SystemExit) as exc:
            raise LoadError(f"{{data}} {target}: the factory raised "
                            f"{describe_failure(exc, file)}", options=True) from exc
    else:
        data = entry
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise LoadError(f"{{data}} {target}: the factory returned {type(data).__name__}, which "
                        "is not an iterable of batches; return a DataLoader (for example your "
                        "validation loader) or a list of batches", options=True)
    source = as_source(data, input_shape, target, max_samples)
    source.notes.append(f"{target}: batches, workers and transforms are the loader's own "
                        "(--batch-size and --workers do not apply)")
    if max_samples is not None:
        source.notes.append(f"using the first {max_samples} samples the loader yields")
    return source


def _is_factory(spec: str) -> bool:
    """``file.py:name`` or ``pkg.module:name`` (and not an existing path)."""
    target = Target.parse(spec)
    if not target.name.isidentifier() or Path(spec).exists():
        return False
    return target.path.endswith(".py") or all(part.isidentifier()
                                              for part in target.path.split("."))


def open_source(spec: str, input_shape: tuple[int, ...], max_samples: int | None = None,
                mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> Source:
    """``--data`` value -> a Source for inputs of shape ``input_shape`` = (C, *spatial).

    ``spec`` is ``random``, an image folder, a ``.npy``/``.npz``/``.pt`` file (for
    ``.npz`` and ``.pt`` dicts ``file.npz:KEY`` picks the array), or a loader factory
    ``file.py:name`` / ``pkg.module:name``.
    """
    if max_samples is not None and max_samples <= 0:
        raise UsageError(f"{{max_samples}} must be positive, got {max_samples}", options=True)
    if (mean is None) != (std is None):
        raise UsageError("{mean} and {std} go together", options=True)
    path, key = _split_key(spec)
    if key is None and _is_factory(spec):
        if mean is not None:
            raise UsageError("{mean}/{std} apply to image folders; a loader normalises itself",
                             options=True)
        return open_factory(spec, tuple(input_shape), max_samples)
    if spec == RANDOM:
        size = max_samples or RANDOM_DEFAULT_SAMPLES
        return RandomSource(RANDOM, f"random N(0, 1) inputs, {size} samples (smoke test only)",
                            size, tuple(input_shape))
    if path.is_dir():
        source = _image_folder(path, input_shape, mean, std)
    elif path.suffix.lower() in TENSOR_SUFFIXES:
        if not path.is_file():
            raise UsageError(f"{{data}} {path}: no such file", options=True)
        source = _tensor_file(path, key, input_shape)
    elif not path.exists():
        raise UsageError(f"{{data}} {spec}: no such file or folder", options=True)
    else:
        raise UsageError(f"{{data}} expects an image folder, a .npy/.npz/.pt file, a loader "
                         f"factory (file.py:NAME, pkg.module:NAME) or 'random', got {spec}",
                         options=True)
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
    source = _fit(path, array, input_shape, notes)
    source.file, source.key = path, key
    return source


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
