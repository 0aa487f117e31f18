"""Carry trained weights over to the rewritten model.

Layers keep their names through every rewrite, so a surviving layer's tensors have the
same ``state_dict`` keys in the new model; they are copied bitwise. Only the layers a
strategy replaced or added (and, for ``width``, the resized ones) keep their fresh
initialisation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class MovedWeights:
    """The new model's state dict, and how much of it the old weights gave."""

    state: dict[str, torch.Tensor]
    copied: int  # tensors taken from the old weights
    fresh: int  # tensors of new or resized layers


def transfer(state: dict[str, torch.Tensor], model: nn.Module, fresh_layers: set[str]) -> MovedWeights:
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
    return MovedWeights(out, copied, len(out) - copied)


def save_weights(result: MovedWeights) -> bytes:
    """The bytes of ``torch.save(state_dict)``, for an atomic write."""
    buffer = io.BytesIO()
    torch.save(result.state, buffer)
    return buffer.getvalue()
