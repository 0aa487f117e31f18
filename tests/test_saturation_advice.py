"""Saturation-tail detector, tail comparison and width advice on constructed values."""

from __future__ import annotations

import pytest

from rfalint.saturation.advice import (compare_tails, find_tail, fix_command, suggest_factor,
                                       width_advice)


def span(values):
    tail = find_tail(values)
    return None if tail is None else (tail.start, tail.stop)


@pytest.mark.parametrize("values, expected", [
    ([0.5] * 5 + [0.1] * 4, (5, 9)),  # classic tail at the output
    ([0.1] * 3 + [0.5] * 6, (0, 3)),  # tail near the input (high resolution)
    ([0.4, 0.4, 0.4, 0.2, 0.2, 0.2], (3, 6)),  # exactly 50 % of the rest counts
    ([0.4, 0.4, 0.4, 0.21, 0.21, 0.21], None),  # just above 50 %
    # Two low layers are not a tail, and with a neighbour they average above 50 %. (With a
    # deeper dip, [0.5, 0.1, 0.1] would pass: the definition counts windows, not layers.)
    ([0.5, 0.5, 0.2, 0.2, 0.5, 0.5], None),
    ([0.5, 0.5, 0.1, 0.1, 0.5, 0.5], (2, 5)),
    ([0.3] * 8, None),
    ([0.0] * 6, None),
    # The lowest-ratio window, not the longest passing one: [0.5, 0.5] + the four 0.1 also
    # passes the 50 % test (0.233 <= 0.25) but is a worse tail.
    ([0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1], (4, 8)),
    ([0.6, 0.5, 0.1, 0.2, 0.1, 0.1, 0.55, 0.5], (2, 6)),  # a bump inside stays in the tail
])
def test_find_tail(values, expected):
    assert span(values) == expected


def test_tail_reports_means():
    tail = find_tail([0.5] * 5 + [0.1] * 4)
    assert tail.mean == pytest.approx(0.1) and tail.rest_mean == pytest.approx(0.5)
    assert tail.ratio == pytest.approx(0.2)


NAMES = [f"conv{i}" for i in range(1, 9)]


@pytest.mark.parametrize("sat, rf, verdict", [
    ([], [], "agree"),
    ([5, 6, 7], [], "disagree"),
    ([], [5, 6, 7], "disagree"),
    ([5, 6, 7], [5, 6, 7], "agree"),
    ([6, 7], [5, 6, 7], "agree"),  # one layer apart
    ([2, 3, 4, 5, 6, 7], [5, 6, 7], "disagree"),
])
def test_compare_tails(sat, rf, verdict):
    result = compare_tails(NAMES, sat, rf)
    assert result.verdict == verdict
    assert result.explanation


@pytest.mark.parametrize("s_mu, factor", [
    (0.10, 0.375),  # 0.4 in eighths
    (0.05, 0.25),  # 0.2 -> 0.25
    (0.001, 0.125),  # clamped
    (0.19, 0.75),
    (0.31, 1.25),  # quarters between 1 and 2
    (0.40, 1.5),  # 1.6 -> 1.5
    (0.60, 2.5),  # halves above 2 (2.4 -> 2.5)
    (1.00, 4.0),
])
def test_suggest_factor(s_mu, factor):
    assert suggest_factor(s_mu) == factor


@pytest.mark.parametrize("s_mu", [0.20, 0.25, 0.30])
def test_width_fits_inside_band(s_mu):
    advice = width_advice(s_mu, lambda f: f"fix {f}")
    assert advice.fits and advice.factor is None and advice.command is None


def test_width_advice_outside_band_names_the_command_and_the_heuristic():
    advice = width_advice(0.10, lambda f: f"rfalint fix m.py --factor {f:g}")
    assert not advice.fits and advice.factor == 0.375
    assert advice.command == "rfalint fix m.py --factor 0.375"
    assert "§11.3" in advice.explanation and "heuristic" in advice.explanation
    assert "shrink" in advice.explanation
    assert "widen" in width_advice(0.5).explanation


def test_no_advice_without_saturation():
    assert width_advice(None).factor is None and not width_advice(None).fits
    assert width_advice(0.0).factor is None


def test_fix_command_repeats_the_model_options():
    command = fix_command("models.py:deep", "32", 0.5, 1, ["depth=4", "name=a b"])
    assert command == ("rfalint fix models.py:deep --res 32 --in-channels 1 --arg depth=4 "
                       "--arg 'name=a b' --strategy width --factor 0.5 -o deep_width0.5.yaml")
    assert fix_command("pkg.models:resnet", "224x160", 1.25).endswith(
        "--res 224x160 --strategy width --factor 1.25 -o resnet_width1.25.yaml")
    assert fix_command("dir/net.py", "32", 2).endswith("-o net_width2.yaml")
