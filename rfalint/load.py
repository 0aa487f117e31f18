"""Stage 1 of the pipeline: turn a MODEL target into an ``nn.Module``.

Targets: ``file.py``, ``file.py:name``, ``pkg.module:name`` and ``spec.yaml``. ``name`` is
an ``nn.Module`` subclass, a factory function or a module-level instance. Every failure
is a :class:`LoadError` with one line that says what to change.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, TypeVar

import torch.nn as nn

from rfalint.errors import LoadError, ModelError, UsageError

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Target:
    """A MODEL target split once: ``path`` (file.py, spec.yaml or pkg.module) and the
    entry ``name`` after the last ':' ('' when none)."""

    path: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        # "C:\\x.py:name" is not a concern on the platforms torch CPU runs here.
        path, sep, name = text.rpartition(":")
        return cls(path, name) if sep else cls(text)

    def __str__(self) -> str:
        return f"{self.path}:{self.name}" if self.name else self.path

    @property
    def is_spec(self) -> bool:
        return self.path.endswith(SPEC_SUFFIXES)

    @property
    def is_file(self) -> bool:
        """A file path (``.py``, a spec, or anything with a separator), not a dotted module."""
        return self.path.endswith((".py", *SPEC_SUFFIXES)) or os.sep in self.path \
            or "/" in self.path

    @property
    def stem(self) -> str:
        """A short name for what it builds: the entry, the file's stem or the module's last part."""
        if self.name:
            return self.name
        if self.path.endswith((".py", *SPEC_SUFFIXES)):
            return Path(self.path).stem
        return self.path.rsplit(".", 1)[-1]


@dataclass
class LoadedModel:
    model: nn.Module
    target: str  # what the user typed, for reports
    source: Path | None  # file the entry point lives in, when known
    declared: tuple[int, ...] | None = None  # (C, *spatial) a spec declares as its input


# Said when no input size is given and none can be inferred.
RES_REQUIRED = "{res} is required (for example {res} 32 or {res} 224x160)"
NO_INPUT_SIZE = ("cannot infer the input size: give {res} (for example {res} 32), set res in "
                 "[tool.rfalint], or give the model an input_size attribute")
# Attributes under which models commonly state their input size: pytorchcv's in_size
# (H, W), input_size (N, (H, W) or (C, H, W)) and timm's default_cfg["input_size"].
SIZE_ATTRIBUTES = ("in_size", "input_size")


def parse_args(pairs: list[str] | None) -> dict[str, Any]:
    """``["num_classes=10", "stem=cifar"]`` -> kwargs, values parsed as YAML scalars."""
    kwargs: dict[str, Any] = {}
    if pairs:
        import yaml  # only --arg needs a YAML parser
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"{{args}} expects key=value, got {pair!r}", options=True)
        try:
            kwargs[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            kwargs[key.strip()] = value
    return kwargs


def parse_resolution(text: str | int) -> tuple[int, ...]:
    """``32`` -> (32,), ``224x160`` -> (224, 160), ``16x112x112`` -> (16, 112, 112)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{{res}} expects N, HxW or DxHxW with positive integers, got {text!r}",
                         options=True) from None
    if not sizes or len(sizes) > 3 or any(s <= 0 for s in sizes):
        raise UsageError(f"{{res}} expects N, HxW or DxHxW with positive integers, got {text!r}",
                         options=True)
    return sizes


_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose1d: 1,
         nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3, nn.MaxPool1d: 1, nn.MaxPool2d: 2,
         nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
         nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


def _spatial_dims(model: nn.Module) -> int:
    return next((d for m in model.modules() for t, d in _DIMS.items() if type(m) is t), 2)


def declared_resolution(loaded: LoadedModel) -> tuple[int, ...] | None:
    """The spatial input size the model states itself, or None: a spec's ``input``, else an
    ``in_size``/``input_size`` attribute or ``default_cfg["input_size"]`` (a leading
    channel count, as timm writes it, is dropped)."""
    if loaded.declared is not None:
        return tuple(loaded.declared[1:])
    model = loaded.model
    values = [getattr(model, name, None) for name in SIZE_ATTRIBUTES]
    config = getattr(model, "default_cfg", None)
    if isinstance(config, dict):
        values.append(config.get("input_size"))
    dims = _spatial_dims(model)
    for value in values:
        sizes = (value,) if isinstance(value, int) else value
        if not isinstance(sizes, (tuple, list)) or not sizes or \
                not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            continue
        if len(sizes) == dims + 1:
            sizes = sizes[1:]
        if len(sizes) in (1, dims):
            return tuple(sizes)
    return None


def input_shape(model: nn.Module, res: tuple[int, ...], in_channels: int | None) -> tuple[int, ...]:
    """(C, *spatial). A single size is repeated over the model's spatial dims, which are
    read from its first conv/pool/norm layer. Without ``in_channels``, C is the input
    channels of the model's first conv layer, else 3; no forward runs here
    (:func:`run_at_input` corrects C when that conv does not read the input)."""
    if in_channels is not None and in_channels <= 0:
        raise UsageError(f"{{in_channels}} must be positive, got {in_channels}", options=True)
    if len(res) == 1:
        res = res * _spatial_dims(model)
    if in_channels is not None:
        return (in_channels, *res)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return (first_conv.in_channels if first_conv is not None else 3, *res)


# Input channel counts tried, in this order, when the first conv's count does not fit.
PROBED_CHANNELS = (3, 1, 4, 2)
_CHANNEL_ERROR = re.compile(r"to have \d+ channels, but got \d+ channels")

T = TypeVar("T")


def run_at_input(run: Callable[[tuple[int, ...]], T], model: nn.Module, res: tuple[int, ...],
                 in_channels: int | None) -> tuple[tuple[int, ...], T]:
    """``(shape, run(shape))`` at the model's input shape (:func:`input_shape`).

    When C was inferred and the forward rejects it with a conv channel error, the first
    registered conv does not read the input (YOLO's Focus stem stacks 4 phases of it): the
    counts of ``PROBED_CHANNELS`` are tried in turn, and a note on stderr says which one
    ran (also when that run then fails for another reason). A well-formed model pays no
    extra forward."""
    shape = input_shape(model, res, in_channels)
    try:
        return shape, run(shape)
    except ModelError as exc:
        if in_channels is not None or not _CHANNEL_ERROR.search(str(exc)):
            raise
        first_error = exc
    for channels in PROBED_CHANNELS:
        if channels == shape[0]:
            continue
        fitted = (channels, *shape[1:])
        try:
            result = run(fitted)
        except ModelError as exc:
            if _CHANNEL_ERROR.search(str(exc)):
                continue
            _note_channels(shape[0], channels)  # the count fits; the error comes later on
            raise
        _note_channels(shape[0], channels)
        return fitted, result
    raise first_error


def _note_channels(first_conv: int, channels: int) -> None:
    print(f"rfalint: note: the first conv reads {first_conv} channels but not the input; "
          f"ran with {channels} input channels, the first of {PROBED_CHANNELS} that fits "
          "(pass --in-channels to set it)", file=sys.stderr)


def fitting_input_shape(model: nn.Module, res: tuple[int, ...],
                        in_channels: int | None) -> tuple[int, ...]:
    """The input shape, C checked by one shape-only capture: for commands that capture
    many times (fix, sweep, saturation, export). ``check`` corrects C on its own capture
    instead (:func:`run_at_input`)."""
    from rfalint.capture import capture
    return run_at_input(lambda shape: capture(model, shape), model, res, in_channels)[0]


def load_model(target: str, kwargs: dict[str, Any] | None = None) -> LoadedModel:
    kwargs = kwargs or {}
    parsed = Target.parse(target)
    if parsed.is_spec:
        return _load_spec(target, parsed.path, kwargs)
    if parsed.is_file:
        module, source = _import_file(parsed.path)
    else:
        module = _import_dotted(parsed.path)
        source = Path(inspect.getsourcefile(module) or "")
    entry_name, entry = _find_entry(module, parsed.name, target)
    return LoadedModel(_instantiate(entry_name, entry, kwargs), target, source)


def import_attribute(target: str) -> tuple[Any, Path | None]:
    """``file.py:name`` or ``pkg.module:name`` -> (the named object, its file when known),
    for entry points that are not models (a data loader factory)."""
    parsed = Target.parse(target)
    if not parsed.name.isidentifier():
        raise LoadError(f"{target}: name the function, as file.py:NAME or pkg.module:NAME")
    if parsed.is_file:
        module, source = _import_file(parsed.path)
    else:
        module, source = _import_dotted(parsed.path), None
    if not hasattr(module, parsed.name):
        raise LoadError(f"{target}: no attribute {parsed.name!r}")
    return getattr(module, parsed.name), source


def describe_failure(exc: BaseException, file: Path | None = None) -> str:
    """``file:line: Type: message`` of an exception raised by the user's code."""
    return f"{_user_frame(exc, file)}: {_describe(exc)}"


def _load_spec(target: str, path: str, kwargs: dict[str, Any]) -> LoadedModel:
    if kwargs:
        raise UsageError("{args} do not apply to YAML specs", options=True)
    file = Path(path)
    if not file.is_file():
        raise LoadError(f"{path}: no such file")
    from rfalint import spec

    doc = spec.parse(spec.read(file), str(file))
    return LoadedModel(spec.build(doc), target, file, doc.input_shape)


def _user_frame(exc: BaseException, file: Path | None) -> str:
    """file:line of the innermost frame in the user's code (or the last frame)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    rfalint_dir = str(Path(__file__).parent)
    user = [f for f in frames if not f.filename.startswith(rfalint_dir)
            and "importlib" not in f.filename]
    if file is not None:
        in_file = [f for f in user if Path(f.filename).resolve() == file.resolve()]
        user = in_file or user
    frame = user[-1] if user else (frames[-1] if frames else None)
    return f"{frame.filename}:{frame.lineno}" if frame else "?"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: str) -> tuple[ModuleType, Path]:
    file = Path(path)
    if file.is_dir():
        raise LoadError(f"{path}: is a directory; give a .py file, a .yaml spec or pkg.module:name")
    if not file.is_file():
        raise LoadError(f"{path}: no such file")
    if file.suffix != ".py":
        raise LoadError(f"{path}: expected a .py file, a .yaml spec or pkg.module:name")
    file = file.resolve()
    module_name = f"rfalint_user_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(f"{_user_frame(exc, file)}: error importing {path}: {_describe(exc)}") from exc
    finally:
        sys.path.remove(str(file.parent))
    return module, file


def _import_dotted(dotted: str) -> ModuleType:
    if not dotted or not all(part.isidentifier() for part in dotted.split(".")):
        raise LoadError(f"{dotted!r} is neither an existing file nor a module path (pkg.module:name)")
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and dotted.startswith(exc.name):
            raise LoadError(f"no module named {exc.name!r} (looked in the current directory and "
                            "sys.path)") from exc
        raise LoadError(f"{_user_frame(exc, None)}: error importing {dotted}: {_describe(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise LoadError(f"{_user_frame(exc, None)}: error importing {dotted}: {_describe(exc)}") from exc
    finally:
        sys.path.remove(os.getcwd())


def _is_entry(obj: Any) -> bool:
    return (inspect.isclass(obj) and issubclass(obj, nn.Module)) or inspect.isfunction(obj) \
        or isinstance(obj, nn.Module)


def _candidates(module: ModuleType) -> dict[str, Any]:
    """Public model classes, factory functions and instances defined in the module itself."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = {}
    for name in names:
        obj = getattr(module, name, None)
        if isinstance(obj, nn.Module):
            found[name] = obj
        elif _is_entry(obj) and getattr(obj, "__module__", None) == module.__name__:
            found[name] = obj
    return found


def _find_entry(module: ModuleType, name: str, target: str) -> tuple[str, Any]:
    candidates = _candidates(module)
    if name:
        if not hasattr(module, name):
            close = difflib.get_close_matches(name, list(candidates), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LoadError(f"{target}: no attribute {name!r}{hint}")
        obj = getattr(module, name)
        if not _is_entry(obj):
            raise LoadError(f"{target}: {name!r} is not an nn.Module class, factory or instance")
        return name, obj
    if len(candidates) == 1:
        return next(iter(candidates.items()))
    if not candidates:
        raise LoadError(f"{target}: defines no nn.Module subclass, factory function or instance")
    listed = ", ".join(sorted(candidates))
    raise LoadError(f"{target}: several models found ({listed}); pick one with {target}:NAME")


def _instantiate(name: str, entry: Any, kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(entry, nn.Module):
        if kwargs:
            raise UsageError(f"{name!r} is a module instance; {{args}} do not apply", options=True)
        return entry
    try:
        inspect.signature(entry).bind(**kwargs)
    except TypeError as exc:
        params = ", ".join(str(p) for p in inspect.signature(entry).parameters.values()
                           if p.name != "self")
        raise LoadError(f"wrong arguments for {name}({params}): {exc}") from exc
    except ValueError:
        pass  # no signature available (C extension): let the call report the problem
    try:
        model = entry(**kwargs)
    except (Exception, SystemExit) as exc:
        raise LoadError(f"{_user_frame(exc, None)}: building {name} raised {_describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise LoadError(f"{name} returned {type(model).__name__}, not an nn.Module")
    return model
