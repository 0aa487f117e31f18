"""Size limits that keep a hostile spec from exhausting memory or time.

Each is checked before the work it bounds: the file size before parsing, YAML nodes
(aliases counted as often as they are used) before the document is walked, the layer
count while blocks and repeats expand, and parameters and layer outputs on ``meta`` tensors
before any real weight or activation is allocated (a later real forward, such as the cost
model's, then handles at most 1 GB per layer output at the spec's size). The defaults leave room for every real CNN (ResNet152 has 60 M
parameters and about 500 layers); pass a :class:`Limits` to change them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1 << 20  # spec file size
    max_nodes: int = 200_000  # YAML values after alias expansion
    max_layers: int = 10_000  # layers after expanding blocks and repeats
    max_repeat: int = 1_000  # one entry's repeat count
    max_block_depth: int = 16  # blocks used inside blocks
    max_params: int = 500_000_000  # parameters of the built model (2 GB in float32)
    max_activation: int = 1 << 28  # values in one layer output at the spec's input size

