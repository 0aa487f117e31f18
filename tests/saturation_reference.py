"""The single-process float64 reference that every saturation path must reproduce.

The model runs in float64 on all the data at once; each measured layer's outputs are
flattened to (observations, C) rows, numpy forms the population covariance and its
eigenvalues, and k is the smallest count whose cumulative share reaches delta. Nothing
here uses rfalint's accumulator, eigen step or data sources.
"""

from __future__ import annotations

import copy
import textwrap

import numpy as np
import torch
import torch.nn as nn

# A small CNN with a residual add, a strided conv and a linear head: 3 measured convs on
# the main path, a 1x1 shortcut off it, and the classifier.
MODEL = textwrap.dedent('''
    import torch.nn as nn


    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1)
            self.short = nn.Conv2d(8, 12, 1, stride=2)
            self.fc = nn.Linear(12, 5)

        def forward(self, x):
            x = self.stem(x).relu()
            x = (x + self.conv(x)).relu()
            x = (self.down(x) + self.short(x)).relu()
            return self.fc(x.mean((2, 3)))
''')


def reference(model: nn.Module, data: torch.Tensor, names: list[str],
              delta: float = 0.99) -> dict[str, int]:
    """k per layer name from float64 outputs of every sample at once."""
    model64 = copy.deepcopy(model).double().eval()
    outputs: dict[str, np.ndarray] = {}
    modules = dict(model64.named_modules())
    for name in names:
        dim = 1 if isinstance(modules[name], nn.modules.conv._ConvNd) else -1
        modules[name].register_forward_hook(
            lambda m, a, y, name=name, dim=dim: outputs.__setitem__(
                name, y.movedim(dim, -1).reshape(-1, y.shape[dim]).detach().numpy()))
    with torch.no_grad():
        model64(data.double())
    ks = {}
    for name in names:
        values = np.sort(np.linalg.eigvalsh(np.cov(outputs[name], rowvar=False, bias=True)))[::-1]
        values = np.where(values > values[0] * len(values) * np.finfo(float).eps, values, 0)
        share = np.cumsum(values) / values.sum()
        ks[name] = int(np.argmax(share >= delta)) + 1
    return ks
