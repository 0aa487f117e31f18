"""Project settings: ``[tool.rfalint]`` in ``pyproject.toml`` or a ``rfalint.toml``.

Like ruff, the first config found walking up from the current directory wins (in each
directory ``rfalint.toml`` before a ``pyproject.toml`` that has a ``[tool.rfalint]`` table),
``--config`` names one explicitly, and command-line flags override it. Unknown keys are
errors so a typo never silently disables a setting.

Example ``pyproject.toml``::

    [tool.rfalint]
    res = 32
    select = ["RFA1"]
    ignore = ["RFA105"]
    fail-on = "error"

    [tool.rfalint.per-layer-ignores]
    "layer4.*" = ["RFA103"]

    [[tool.rfalint.models]]
    target = "models/resnet.py:resnet18"
    args = { num_classes = 10 }

    [[tool.rfalint.modules]]  # a custom layer analysed as one op (rfalint.ops)
    type = "mypkg.layers:DeformConv2d"
    window = ["kernel_size", "stride", "padding", "dilation"]

File targets of ``[[tool.rfalint.models]]`` are relative to the config file's directory,
so ``rfalint check`` gives the same result from any sub-directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch.nn as nn

from rfalint import api
from rfalint.api import FAIL_LEVELS, CheckResult
from rfalint.errors import RfalintError, UsageError
from rfalint.load import (RES_REQUIRED, Target, import_attribute, load_model, parse_args,
                          parse_resolution, run_at_input)
from rfalint.ops import DEFAULT, KINDS, Registry, register_module
from rfalint.rules import RULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_SELECT = ("RFA",)
CONFIG_FILE = "rfalint.toml"
PYPROJECT = "pyproject.toml"

SETTINGS_KEYS = ("res", "select", "ignore", "per-layer-ignores", "fail-on", "models", "modules")
MODEL_KEYS = ("target", "res", "args")
MODULE_KEYS = ("type", "window", "kind", "pointwise")


@dataclass(frozen=True)
class ModelSpec:
    """One model to lint: its target as written, resolution and factory arguments."""

    target: str
    res: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None  # directory that relative file targets are resolved against

    def load_target(self) -> str:
        """The target with a relative file path made relative to ``base``."""
        target = Target.parse(self.target)
        if self.base is None or not target.is_file or Path(target.path).is_absolute():
            return self.target
        return str(dataclasses.replace(target, path=str(self.base / target.path)))


@dataclass(frozen=True)
class ModuleDecl:
    """A custom layer from ``[[tool.rfalint.modules]]``: one op with a window, or pointwise
    (:func:`rfalint.ops.register_module`). ``type`` is ``pkg.module:Class``, imported with
    the config's directory on the path: it must be the class the model uses."""

    type: str
    window: tuple[str, ...] | dict[str, str] | None = None
    kind: str = "conv"
    pointwise: bool = False
    base: Path | None = None

    def register(self, registry: Registry) -> None:
        sys.path.insert(0, str(self.base or Path.cwd()))
        try:
            cls, _ = import_attribute(self.type)
        finally:
            sys.path.pop(0)
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise UsageError(f"modules: {self.type} is not an nn.Module class")
        try:
            register_module(cls, window=self.window, pointwise=self.pointwise, kind=self.kind,
                            registry=registry)
        except ValueError as exc:
            raise UsageError(f"modules: {self.type}: {exc}".replace("register_module: ", ""))


@dataclass(frozen=True)
class Settings:
    """The effective settings of one run."""

    res: str | None = None
    select: tuple[str, ...] = DEFAULT_SELECT
    ignore: tuple[str, ...] = ()
    per_layer_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fail_on: str = "error"
    models: tuple[ModelSpec, ...] = ()
    modules: tuple[ModuleDecl, ...] = ()
    path: Path | None = None  # the config file read, None when there is none

    def registry(self) -> Registry | None:
        """The op registry with the declared custom layers; None (the default) without."""
        if not self.modules:
            return None
        registry = DEFAULT.copy()
        for declaration in self.modules:
            declaration.register(registry)
        return registry

    def override(self, *, model: str | None = None, res: str | None = None,
                 args: list[str] | None = None, select: Iterable[str] | None = None,
                 ignore: Iterable[str] | None = None, fail_on: str | None = None) -> Settings:
        """Apply command-line flags: each given flag replaces the config's value.

        A MODEL on the command line replaces the configured models; ``res`` applies to
        every model.
        """
        changes: dict[str, Any] = {}
        if select:
            changes["select"] = _selectors(select, "{select}")
        if ignore:
            changes["ignore"] = _selectors(ignore, "{ignore}")
        if fail_on is not None:
            changes["fail_on"] = _fail_level(fail_on, "{fail_on}")
        if res is not None:
            changes["res"] = _resolution(res, "{res}")
        models = self.models
        if model is not None:
            models = (ModelSpec(model, args=parse_args(args)),)
        elif args:
            raise UsageError("{args} needs a MODEL; set args per model in [[tool.rfalint.models]]",
                             options=True)
        changes["models"] = tuple(
            dataclasses.replace(m, res=changes.get("res") or m.res or self.res) for m in models)
        return dataclasses.replace(self, **changes)

    def to_toml(self) -> str:
        """The settings as a TOML document (what ``--show-settings`` prints)."""
        source = str(self.path) if self.path else "none found; defaults"
        lines = [f"# rfalint settings (config: {source})"]
        if self.res is not None:
            lines.append(f"res = {_toml_res(self.res)}")
        lines += [f"select = {_toml_value(list(self.select))}",
                  f"ignore = {_toml_value(list(self.ignore))}",
                  f"fail-on = {_toml_value(self.fail_on)}",
                  "per-layer-ignores = " + _toml_value(
                      {k: list(v) for k, v in self.per_layer_ignores.items()})]
        for model in self.models:
            lines += ["", "[[models]]", f"target = {_toml_value(model.target)}"]
            if model.res is not None:
                lines.append(f"res = {_toml_res(model.res)}")
            lines.append(f"args = {_toml_value(model.args)}")
        for module in self.modules:
            lines += ["", "[[modules]]", f"type = {_toml_value(module.type)}"]
            if module.pointwise:
                lines.append("pointwise = true")
            else:
                lines += [f"window = {_toml_value(module.window)}",
                          f"kind = {_toml_value(module.kind)}"]
        return "\n".join(lines) + "\n"


def _toml_res(res: str) -> str:
    return res if res.isdigit() else json.dumps(res)


def _toml_value(value: Any) -> str:
    """TOML for the values settings hold; JSON string escapes are valid in TOML strings.

    TOML has no null: a ``None`` argument (``--arg x=null``) is shown as the string "None".
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float)):
        return json.dumps(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    return json.dumps(repr(value))


# ---------------------------------------------------------------------- finding and reading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from exc


def find_config(start: Path) -> Path | None:
    """The nearest ``rfalint.toml``, or ``pyproject.toml`` with ``[tool.rfalint]``, upward."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file():
            return directory / CONFIG_FILE
        pyproject = directory / PYPROJECT
        if pyproject.is_file() and "rfalint" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def load_settings(config: Path | None = None, start: Path | None = None) -> Settings:
    """Settings from ``config``, else from the nearest config above ``start`` (the cwd)."""
    if config is None:
        config = find_config((start or Path.cwd()).resolve())
        if config is None:
            return Settings()
    elif not config.is_file():
        raise UsageError(f"{config}: no such config file")
    config = config.resolve()
    data = _read_toml(config)
    if config.name == PYPROJECT:
        if "rfalint" not in data.get("tool", {}):
            raise UsageError(f"{config}: no [tool.rfalint] table")
        table, where = data["tool"]["rfalint"], "tool.rfalint"
    else:
        table, where = data, ""
    return parse_settings(table, config, where)


def parse_settings(table: dict[str, Any], path: Path, where: str = "tool.rfalint") -> Settings:
    """Validate a settings table; every problem is one line naming the file and key."""

    def key(name: str) -> str:
        return f"{where}.{name}" if where else name

    def check(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise UsageError(f"{path}: {key(name)} must be {expected}")

    if not isinstance(table, dict):
        raise UsageError(f"{path}: {where or 'the config'} must be a table")
    for name in table:
        if name not in SETTINGS_KEYS:
            raise UsageError(f"{path}: unknown key {key(name)!r} "
                             f"(known: {', '.join(SETTINGS_KEYS)})")
    settings: dict[str, Any] = {"path": path}
    if "res" in table:
        settings["res"] = _resolution(table["res"], f"{path}: {key('res')}")
    for name in ("select", "ignore"):
        if name in table:
            value = table[name]
            check(isinstance(value, list) and all(isinstance(v, str) for v in value), name,
                  "a list of rule code prefixes")
            settings[name] = _selectors(value, f"{path}: {key(name)}")
    if "fail-on" in table:
        settings["fail_on"] = _fail_level(table["fail-on"], f"{path}: {key('fail-on')}")
    if "per-layer-ignores" in table:
        value = table["per-layer-ignores"]
        check(isinstance(value, dict) and all(
            isinstance(codes, list) and all(isinstance(c, str) for c in codes)
            for codes in value.values()), "per-layer-ignores",
            'a table of layer globs to lists of codes, e.g. "layer4.*" = ["RFA103"]')
        settings["per_layer_ignores"] = {
            pattern: _selectors(codes, f"{path}: {key('per-layer-ignores')}.{pattern}")
            for pattern, codes in value.items()}
    if "models" in table:
        check(isinstance(table["models"], list) and all(isinstance(m, dict)
                                                        for m in table["models"]),
              "models", "an array of tables ([[tool.rfalint.models]])")
        # A model without its own res inherits the top-level one.
        settings["models"] = tuple(_model(m, i + 1, path, key("models"), settings.get("res"))
                                   for i, m in enumerate(table["models"]))
    if "modules" in table:
        check(isinstance(table["modules"], list) and all(isinstance(m, dict)
                                                         for m in table["modules"]),
              "modules", "an array of tables ([[tool.rfalint.modules]])")
        settings["modules"] = tuple(_module(m, i + 1, path, key("modules"))
                                    for i, m in enumerate(table["modules"]))
    return Settings(**settings)


def _module(entry: dict[str, Any], number: int, path: Path, where: str) -> ModuleDecl:
    label = f"{path}: {where} #{number}"
    for name in entry:
        if name not in MODULE_KEYS:
            raise UsageError(f"{label}: unknown key {name!r} (known: {', '.join(MODULE_KEYS)})")
    kind, pointwise, window = entry.get("kind", "conv"), entry.get("pointwise", False), \
        entry.get("window")
    module, _, name = str(entry.get("type", "")).partition(":")  # pkg.module:Class
    if not (module and name.isidentifier() and not module.endswith(".py")
            and all(part.isidentifier() for part in module.split("."))):
        raise UsageError(f"{label}: 'type' must be pkg.module:Class, got {entry.get('type')!r}")
    if not isinstance(pointwise, bool) or (window is None) != pointwise:
        raise UsageError(f"{label}: give either 'window' or 'pointwise = true'")
    if window is not None and not (
            isinstance(window, list) and all(isinstance(w, str) for w in window)
            or isinstance(window, dict) and all(isinstance(w, str) for w in window.values())):
        raise UsageError(f"{label}: 'window' must be a list of attribute names or a table "
                         "of window argument = attribute name")
    if kind not in KINDS:
        raise UsageError(f"{label}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    window = tuple(window) if isinstance(window, list) else window
    return ModuleDecl(entry["type"], window, kind, pointwise, path.parent)


def _model(entry: dict[str, Any], number: int, path: Path, where: str,
           default_res: str | None) -> ModelSpec:
    label = f"{path}: {where} #{number}"
    for name in entry:
        if name not in MODEL_KEYS:
            raise UsageError(f"{label}: unknown key {name!r} (known: {', '.join(MODEL_KEYS)})")
    target = entry.get("target")
    if not isinstance(target, str) or not target:
        raise UsageError(f"{label}: 'target' is required (file.py[:name], pkg.module:name or "
                         "spec.yaml)")
    args = entry.get("args", {})
    if not isinstance(args, dict):
        raise UsageError(f"{label}: 'args' must be a table of factory keyword arguments")
    res = _resolution(entry["res"], f"{label}: res") if "res" in entry else default_res
    return ModelSpec(target, res, dict(args), path.parent)


def _resolution(value: Any, where: str) -> str:
    problem = UsageError(f"{where} must be N, HxW or DxHxW with positive integers, got {value!r}",
                         options=True)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise problem
    try:
        parse_resolution(value)
    except UsageError:
        raise problem from None
    return str(value)


def _fail_level(value: Any, where: str) -> str:
    if value not in FAIL_LEVELS:
        raise UsageError(f"{where} must be one of {', '.join(FAIL_LEVELS)}, got {value!r}",
                         options=True)
    return value


def _selectors(values: Iterable[str], where: str) -> tuple[str, ...]:
    """Rule code prefixes, comma-separated lists allowed (``RFA101,RFA2``); each must match."""
    out: list[str] = []
    for value in values:
        for prefix in value.split(","):
            prefix = prefix.strip().upper()
            if not prefix:
                continue
            if not any(rule.code.startswith(prefix) for rule in RULES):
                raise UsageError(f"{where}: {prefix!r} matches no rule code "
                                 f"(codes: {', '.join(r.code for r in RULES)})", options=True)
            out.append(prefix)
    return tuple(out)


# ---------------------------------------------------------------------- running


def check_models(settings: Settings, in_channels: int | None = None,
                 cost: bool = True, counter: str = "auto",
                 object_size: str | None = None,
                 include_gates: bool = False) -> list[CheckResult]:
    """Load and check every model of ``settings``, in order; the first failure raises.
    ``cost=False`` skips the cost model (params/MACs); ``counter`` picks its counter;
    ``object_size`` (``--object-size``) replaces the image as the border's reference;
    ``include_gates`` counts full-size attention gates as feature paths."""
    if not settings.models:
        where = f" in {settings.path}" if settings.path else \
            " (no rfalint.toml or [tool.rfalint] found from the current directory up)"
        raise UsageError(f"no MODEL given and no [[tool.rfalint.models]] configured{where}")
    results = []
    registry = settings.registry()
    for spec in settings.models:
        configured = spec.base is not None
        if not spec.res:
            if not configured:
                raise UsageError(RES_REQUIRED, options=True)
            raise UsageError(f"{spec.target}: no resolution: pass {{res}}, or set res in the "
                             "config or for this model", options=True)
        try:
            loaded = load_model(spec.load_target(), spec.args)
            results.append(run_at_input(lambda shape: api.check(
                loaded.model, shape, name=spec.target, select=settings.select,
                ignore=settings.ignore, per_layer_ignores=settings.per_layer_ignores,
                source=loaded.source, cost=cost, counter=counter, object_size=object_size,
                include_gates=include_gates, registry=registry),
                loaded.model, parse_resolution(spec.res), in_channels)[1])
        except RfalintError as exc:
            # Name the configured model a message is about, unless it already does.
            if not configured or spec.target in str(exc):
                raise
            raise type(exc)(f"{spec.target}: {exc}") from exc
    return results
