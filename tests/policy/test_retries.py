"""Retry delays and their jitter."""

from __future__ import annotations

import random
import statistics

import pytest

from policy.retries import (
    base_retry_delay,
    clamped_poisson_interval,
    jitter_band,
    jittered_delay,
    lower_clamp_multiple,
)


@pytest.mark.parametrize(
    ("retry_delay", "attempt", "expected"),
    [
        (None, 1, 0),
        (7, 1, 7),
        (7, 5, 7),
        ([], 1, 0),
        ([1, 2, 3], 1, 1),
        ([1, 2, 3], 3, 3),
        ([1, 2, 3], 9, 3),
        ([4, 8], 0, 4),
    ],
)
def test_base_retry_delay(retry_delay, attempt, expected):
    assert base_retry_delay(retry_delay, attempt) == expected


@pytest.mark.parametrize(
    ("factor", "lower_multiple", "upper_multiple"),
    [(0.3, 0.75, 1.3), (0.5, 0.63, 1.5), (1.0, 0.415, 2.0)],
)
def test_jitter_band(factor, lower_multiple, upper_multiple):
    lower, upper = jitter_band(10, factor)

    assert lower == pytest.approx(10 * lower_multiple, abs=0.05)
    assert upper == pytest.approx(10 * upper_multiple)


def test_large_factor_has_zero_lower_bound():
    assert lower_clamp_multiple(50) == 0
    assert jitter_band(10, 60)[0] == 0


def test_invalid_clamping_factor_raises():
    with pytest.raises(ValueError, match="clamping factor"):
        jitter_band(10, 0)


def test_zero_average_raises():
    with pytest.raises(ValueError, match="average interval"):
        clamped_poisson_interval(0)


def test_draws_stay_in_band_and_keep_mean():
    rng = random.Random(7)
    lower, upper = jitter_band(30, 0.5)

    draws = [clamped_poisson_interval(30, 0.5, rng=rng) for _ in range(5000)]

    assert min(draws) >= lower
    assert max(draws) <= upper
    assert statistics.mean(draws) == pytest.approx(30, rel=0.05)


def test_zero_delay_is_not_jittered():
    assert jittered_delay(0, 0.5) == 0


def test_missing_factor_is_not_jittered():
    assert jittered_delay(12, None) == 12
    assert jittered_delay(12, 0) == 12


def test_jittered_delay_uses_band():
    lower, upper = jitter_band(12, 0.3)

    assert lower <= jittered_delay(12, 0.3, rng=random.Random(1)) <= upper
