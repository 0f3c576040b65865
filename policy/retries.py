"""Retry arithmetic: the base delay of a retry and its jitter.

A retry delay is a number of seconds, or a list of them indexed by the attempt that
failed, whose last value repeats for every later attempt. Jitter draws the delay from
an exponential distribution with the base delay as its mean, clamped to a band around
it whose bounds are chosen so that the mean stays close to the base delay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def base_retry_delay(retry_delay: float | Sequence[float] | None, attempt: int) -> float:
    """Return the delay in seconds before retrying after failed attempt number `attempt`.

    `attempt` counts from 1. With a list, the first retry uses its first entry and the
    last entry repeats. No delay, or an empty list, means retry at once.
    """
    if retry_delay is None:
        return 0.0
    if isinstance(retry_delay, int | float):
        return float(retry_delay)
    if not retry_delay:
        return 0.0
    index = min(max(attempt - 1, 0), len(retry_delay) - 1)
    return float(retry_delay[index])


def lower_clamp_multiple(upper_multiple: float) -> float:
    """Return the multiple of the mean below which a jittered delay is never drawn.

    It balances the probability mass between the lower bound and the median against
    the mass between the median and the upper bound `mean * upper_multiple`, which keeps
    the mean of the clamped draw close to the unclamped mean. Past a multiple of 50 the
    bound is indistinguishable from zero.
    """
    if upper_multiple >= 50:
        return 0.0
    weight = 2.0**upper_multiple
    return math.log2(weight / (weight - 1))


def jitter_band(average: float, clamping_factor: float) -> tuple[float, float]:
    """Return the (lower, upper) bounds in seconds of a jittered delay around `average`."""
    if clamping_factor <= 0:
        raise ValueError(f"clamping factor {clamping_factor} is invalid; it must be above 0")
    upper_multiple = 1 + clamping_factor
    lower = max(0.0, average * lower_clamp_multiple(upper_multiple))
    return lower, average * upper_multiple


def clamped_poisson_interval(
    average: float, clamping_factor: float = 0.3, rng: random.Random | None = None
) -> float:
    """Draw an interval in seconds with mean close to `average`, inside its jitter band.

    `average` must be above 0, because the exponential distribution has no scale at 0;
    `jittered_delay` guards that case for callers.
    """
    if average <= 0:
        raise ValueError(f"average interval {average} is invalid; it must be above 0")
    lower, upper = jitter_band(average, clamping_factor)
    rng = rng or random

    def cumulative(x: float) -> float:
        return 1 - math.exp(-x / average)

    uniform = rng.uniform(cumulative(lower), cumulative(upper))
    return -math.log(max(1 - uniform, 1e-10)) * average


def jittered_delay(
    base_delay: float, jitter_factor: float | None, rng: random.Random | None = None
) -> float:
    """Apply jitter to `base_delay` when a jitter factor is set and the delay is above 0."""
    if not jitter_factor or base_delay <= 0:
        return base_delay
    return clamped_poisson_interval(base_delay, clamping_factor=jitter_factor, rng=rng)
