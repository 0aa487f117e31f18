"""Carry trained weights over to the rewritten model.

Layers keep their names through every rewrite, so a surviving layer's tensors have the
same ``state_dict`` keys in the new model; they are copied bitwise. Only the layers a
strategy replaced or added (and, for ``width``, the resized ones) keep their fresh
initialisation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from rfalint.errors import UsageError


def load_weights(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read a state dict with ``weights_only=True`` and check it fits ``model`` exactly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"--weights {path}: no such file") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--weights {path}: cannot read a state dict ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UsageError(f"--weights {path}: not a state dict (a mapping of names to tensors)")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and state[k].shape != want[k].shape]
    for keys, what in ((missing, "lacks"), (unexpected, "has unexpected"), (shapes, "has")):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            detail = (f" (shape {tuple(state[keys[0]].shape)}, the model has "
                      f"{tuple(want[keys[0]].shape)})") if keys is shapes else ""
            noun = "another shape for" if keys is shapes else ""
            raise UsageError(f"--weights {path} does not match the model: it {what} "
                             f"{noun}{' ' if noun else ''}'{keys[0]}'{detail}{more}")
    return state


@dataclass
class Transfer:
    state: dict[str, torch.Tensor]
    copied: int  # tensors taken from the old weights
    fresh: int  # tensors of new or resized layers


def transfer(state: dict[str, torch.Tensor], model: nn.Module, fresh_layers: set[str]) -> Transfer:
    """The new model's state dict: every tensor of a surviving layer copied from ``state``."""
    new = model.state_dict()
    out, copied = {}, 0
    for key, value in new.items():
        layer = key.rsplit(".", 1)[0]
        old = state.get(key)
        if layer not in fresh_layers and old is not None and old.shape == value.shape:
            out[key] = old.clone()
            copied += 1
        else:
            out[key] = value.detach().clone()
    model.load_state_dict(out)
    return Transfer(out, copied, len(out) - copied)


def save_weights(result: Transfer) -> bytes:
    """The bytes of ``torch.save(state_dict)``, for an atomic write."""
    buffer = io.BytesIO()
    torch.save(result.state, buffer)
    return buffer.getvalue()
