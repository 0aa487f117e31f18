"""What the saturation values say: the saturation tail and the width advice.

Both rules are from Richter's dissertation and are heuristics found on classifiers of the
VGG/ResNet family trained on image data, not guarantees:

* **Tail** (§8.5): a subsequence of at least 3 consecutive layers (forward order) whose
  mean saturation is at most 50 % of the mean of the other layers.
* **Width** (§11.3): an average saturation ``s_mu`` of roughly 20–30 % performed best;
  below is over-parameterised (shrink the width), above under-parameterised (widen).
  Scale the width of the whole network, not of single layers (per-layer saturation is
  noisy), and fix the depth (the tail) first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Sequence

from rfalint.load import Target

TAIL_MIN_LAYERS = 3
TAIL_RATIO = 0.5
BAND = (0.20, 0.30)
TARGET = 0.25  # middle of the band
# Rounding of the width multiplier: (upper end, step). Eighths when shrinking, like the
# paper's 1/2, 1/4, 1/8; coarser when widening, where the estimate is least certain.
FACTOR_STEPS = ((1.0, 0.125), (2.0, 0.25), (float("inf"), 0.5))
MIN_FACTOR = 0.125
START_TOLERANCE = 1  # tails starting this many measured layers apart still agree


@dataclass
class Tail:
    """Layers ``start .. stop - 1`` (indices into the measured sequence)."""

    start: int
    stop: int
    mean: float
    rest_mean: float

    @property
    def indices(self) -> range:
        return range(self.start, self.stop)

    @property
    def ratio(self) -> float:
        return self.mean / self.rest_mean


def find_tail(values: Sequence[float], min_layers: int = TAIL_MIN_LAYERS,
              ratio: float = TAIL_RATIO) -> Tail | None:
    """The most pronounced saturation tail in ``values`` (forward order), or None.

    Every window of ``min_layers`` or more consecutive layers (leaving at least one layer
    outside) is a candidate when ``mean(window) <= ratio * mean(rest)``. Of those we
    return the one with the lowest ``mean(window) / mean(rest)``; ties go to the longer,
    then the later window. Lowest ratio rather than longest: a long window may swallow
    well-saturated layers next to a strong tail and still pass the 50 % test.
    """
    n = len(values)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    total = prefix[-1]
    best: tuple[tuple[float, int, int], Tail] | None = None
    for start in range(n):
        for stop in range(start + min_layers, n + (start > 0)):
            inside = prefix[stop] - prefix[start]
            mean = inside / (stop - start)
            rest_mean = (total - inside) / (n - (stop - start))
            if rest_mean <= 0 or mean > ratio * rest_mean:
                continue
            key = (mean / rest_mean, -(stop - start), -start)
            if best is None or key < best[0]:
                best = (key, Tail(start, stop, mean, rest_mean))
    return best[1] if best else None


@dataclass
class TailComparison:
    """Saturation tail against the receptive-field tail, over the measured layers."""

    verdict: str  # "agree" or "disagree"
    explanation: str


def compare_tails(names: Sequence[str], saturation_tail: Sequence[int],
                  rf_tail: Sequence[int]) -> TailComparison:
    """Do the two tails name the same layers? Both are index lists into ``names``.

    They agree when neither exists, or when both exist and start at most
    ``START_TOLERANCE`` measured layer apart. The dissertation compares tails by where the
    low-saturated run starts (§9.3); one layer of slack is our choice, because single-layer
    saturation is noisy (§11.3) and shortcut projections sit between main-path convs.
    """
    sat, rf = sorted(saturation_tail), sorted(rf_tail)
    if not sat and not rf:
        return TailComparison("agree", "neither saturation nor receptive field shows a tail")
    if not rf:
        return TailComparison(
            "disagree", f"saturation shows a tail from {names[sat[0]]} ({len(sat)} layers) "
            "but the receptive field predicts none: the layers may be over-parameterised "
            "rather than past the border, or the data's features are smaller than the image")
    if not sat:
        return TailComparison(
            "disagree", f"the receptive field predicts a tail from {names[rf[0]]} "
            f"({len(rf)} layers) but saturation shows none (on an untrained model or "
            "random data saturation cannot show one)")
    offset = sat[0] - rf[0]
    shared = len(set(sat) & set(rf))
    where = "at the same layer" if offset == 0 else \
        f"{abs(offset)} layer{'s' if abs(offset) > 1 else ''} {'later' if offset > 0 else 'earlier'}"
    text = (f"saturation tail starts at {names[sat[0]]}, receptive-field tail at "
            f"{names[rf[0]]} ({where}); {shared} of {len(rf)} RF-tail layers are in the "
            f"saturation tail")
    return TailComparison("agree" if abs(offset) <= START_TOLERANCE else "disagree", text)


@dataclass
class WidthAdvice:
    fits: bool
    factor: float | None  # suggested global width multiplier, None when it fits
    explanation: str
    command: str | None  # the exact ``rfalint fix`` command to apply it


def suggest_factor(s_mu: float) -> float:
    """Width multiplier that moves ``s_mu`` to the band's middle, rounded (>= 1/8).

    If each layer's intrinsic dimension k stays put when its width C changes, s = k/C
    scales as 1/factor, so ``factor = s_mu / 0.25``; rounded by ``FACTOR_STEPS``.
    """
    raw = s_mu / TARGET
    step = next(step for upper, step in FACTOR_STEPS if raw < upper)
    return max(MIN_FACTOR, round(raw / step) * step)


def fix_command(target: str, res: str, factor: float, in_channels: int | None = None,
                args: Sequence[str] = ()) -> str:
    """``rfalint fix`` with every option that made this run, so it rebuilds the same model."""
    stem = Target.parse(target).stem or "model"
    words = ["rfalint", "fix", target, "--res", res]
    if in_channels is not None:
        words += ["--in-channels", str(in_channels)]
    for pair in args:
        words += ["--arg", pair]
    words += ["--strategy", "width", "--factor", f"{factor:g}",
              "-o", f"{stem}_width{factor:g}.yaml"]
    return shlex.join(words)


def width_advice(s_mu: float | None, command_for=None) -> WidthAdvice:
    """Advice from the mean saturation; ``command_for(factor)`` renders the fix command."""
    low, high = BAND
    if s_mu is None:
        return WidthAdvice(False, None, "no layer has a defined saturation: no width advice", None)
    if low <= s_mu <= high:
        return WidthAdvice(True, None, f"s_mu = {s_mu:.1%} is inside the {low:.0%}-{high:.0%} "
                           "band that performed best (dissertation §11.3): the width fits", None)
    if s_mu == 0:
        return WidthAdvice(False, None, "s_mu = 0 (every measured layer is constant): no "
                           "width can be estimated from it", None)
    factor = suggest_factor(s_mu)
    direction = "over-parameterised: shrink" if s_mu < low else "under-parameterised: widen"
    explanation = (
        f"s_mu = {s_mu:.1%} is {'below' if s_mu < low else 'above'} the {low:.0%}-{high:.0%} "
        f"band, so the network looks {direction} every layer's width by about {factor:g}x. "
        f"Estimate: if each layer's intrinsic dimension k stays when its width C changes, "
        f"s = k/C scales as 1/factor, so factor = s_mu / {TARGET:.0%} = {s_mu / TARGET:.3f}, "
        f"rounded{' and clamped to 1/8' if factor == MIN_FACTOR else ''}. "
        "This is a heuristic from the dissertation §11.3, not a measured optimum: saturation "
        "moves less than proportionally with width (§8.4), so retrain at the new width and "
        "measure again.")
    command = command_for(factor) if command_for is not None else None
    return WidthAdvice(False, factor, explanation, command)
