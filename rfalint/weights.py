"""Reading trained weights for a model: one loader for every command that takes weights.

Files are read with ``torch.load(weights_only=True)``, so a checkpoint can never run
code. Common checkpoint layouts are unwrapped (``{"state_dict": ...}``, DataParallel's
``module.`` and torch.compile's ``_orig_mod.`` prefixes). Every problem is one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from rfalint.errors import LoadError, first_line

# Keys under which training scripts commonly nest the state dict in a checkpoint.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")
# Prefixes that wrappers add to every key (DataParallel / DDP, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked to fit ``model`` exactly (names and shapes)."""
    file = Path(path)
    if not file.is_file():
        raise LoadError(f"{{weights}} {path}: no such file", options=True)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with custom classes, corrupt files
        raise LoadError(f"{{weights}} {path}: cannot load with weights_only=True: "
                        f"{type(exc).__name__}: {first_line(exc)}", options=True) from None
    state = _unwrap(loaded, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
                for what, items in (("missing", missing), ("unexpected", unexpected),
                                    ("with other shapes", shapes)) if items]
    if problems:
        raise LoadError(f"{{weights}} {path} do not match the model: {'; '.join(problems)}",
                        options=True)
    return state


def _unwrap(loaded, path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in loaded.items()):
        raise LoadError(f"{{weights}} {path}: expected a state dict (name -> tensor), or one under "
                        f"{'/'.join(STATE_DICT_KEYS)}; got {type(loaded).__name__}", options=True)
    for prefix in WRAPPER_PREFIXES:
        if loaded and all(k.startswith(prefix) for k in loaded):
            loaded = {k[len(prefix):]: v for k, v in loaded.items()}
    return loaded
