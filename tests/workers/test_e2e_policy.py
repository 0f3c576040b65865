"""End to end: the service's rules as a worker meets them (retries, caching, slots, timeouts)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from policy.retries import jitter_band
from tests.e2e_helpers import TASK_MODULES_DIR, Stack, count_lines, state_names
from workers import wait_all

sys.path.insert(0, str(TASK_MODULES_DIR))
import e2e_tasks  # noqa: E402

pytestmark = pytest.mark.e2e

# The service starts a run whose due time is less than half a second away at once.
DUE_TIME_ROUNDING = timedelta(seconds=0.5)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_retries_follow_delays_with_jitter(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.always_fails.delay("retried")
    with pytest.raises(RuntimeError, match="attempt failed for retried"):
        future.result(timeout=120)

    assert count_lines(stack.home / "always_fails.log") == 4
    states = stack.states(future.run_id)
    names = state_names(states)
    assert names.count("AwaitingRetry") == 3
    assert names.count("Retrying") == 3
    for index, name in enumerate(names):
        if name == "AwaitingRetry":
            assert names[index + 1 :].index("Retrying") >= 0
    assert names[-1] == "Failed"

    retries = [state for state in states if state["name"] == "AwaitingRetry"]
    for base_delay, state in zip([0.5, 1.0, 1.5], retries, strict=True):
        lower, upper = jitter_band(base_delay, 0.5)
        scheduled = parse_time(state["state_details"]["scheduled_time"])
        written = parse_time(state["timestamp"])
        delay = (scheduled - written).total_seconds()
        assert lower - 0.01 <= delay <= upper + 0.01, (base_delay, delay)


def test_retry_condition_refusal_runs_once(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.fails_permanently.delay("once")
    with pytest.raises(e2e_tasks.PermanentError):
        future.result(timeout=60)
    assert count_lines(stack.home / "fails_permanently.log") == 1
    assert "AwaitingRetry" not in state_names(stack.states(future.run_id))


def test_cache_hit_skips_execution(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    first = e2e_tasks.cached_square.delay(7)
    assert first.result(timeout=60) == 49
    second = e2e_tasks.cached_square.delay(7)
    assert second.result(timeout=60) == 49
    assert second.state.name == "Cached"
    assert count_lines(stack.home / "cached_square.log") == 1


def test_refresh_cache_runs_again(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    assert e2e_tasks.refreshed_square.delay(3).result(timeout=60) == 9
    again = e2e_tasks.refreshed_square.delay(3)
    assert again.result(timeout=60) == 9
    assert again.state.name == "Completed"
    assert count_lines(stack.home / "refreshed_square.log") == 2


def test_expired_cache_entry_runs_again(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    first = e2e_tasks.short_cached_square.delay(5)
    assert first.result(timeout=60) == 25
    expires = parse_time(stack.states(first.run_id)[-1]["state_details"]["cache_expiration"])
    while datetime.now(UTC) <= expires + timedelta(seconds=0.2):
        time.sleep(0.1)
    second = e2e_tasks.short_cached_square.delay(5)
    assert second.result(timeout=60) == 25
    assert second.state.name == "Completed"
    assert count_lines(stack.home / "short_cached_square.log") == 2


def test_countdown_and_eta_never_start_early(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    submitted = datetime.now(UTC)
    by_countdown = e2e_tasks.note_start.apply_async(("countdown",), countdown=2)
    eta = datetime.now(UTC) + timedelta(seconds=3)
    by_eta = e2e_tasks.note_start.apply_async(("eta",), eta=eta)

    started_countdown = datetime.fromtimestamp(by_countdown.result(timeout=60), UTC)
    started_eta = datetime.fromtimestamp(by_eta.result(timeout=60), UTC)
    assert started_countdown >= submitted + timedelta(seconds=2) - DUE_TIME_ROUNDING
    assert started_eta >= eta - DUE_TIME_ROUNDING


def test_tag_limit_bounds_running_runs(stack: Stack) -> None:
    stack.set_limit("e2e-limited", 2)
    stack.start_worker(["e2e_tasks"], "--concurrency", "10")
    futures = e2e_tasks.limited.map(range(10))
    done, pending = wait_all(futures, timeout=180)
    assert pending == []
    assert sorted(future.result() for future in done) == list(range(10))

    # Rebuild the Running intervals from the state histories and sweep them in time order.
    moments: list[tuple[datetime, int]] = []
    handed_back = 0
    for future in futures:
        states = stack.states(future.run_id)
        handed_back += state_names(states).count("AwaitingConcurrencySlot")
        for index, state in enumerate(states):
            if state["type"] == "RUNNING":
                moments.append((parse_time(state["timestamp"]), 1))
                moments.append((parse_time(states[index + 1]["timestamp"]), -1))
    running = 0
    max_running = 0
    for _, change in sorted(moments, key=lambda item: (item[0], item[1])):
        running += change
        max_running = max(max_running, running)
    assert max_running <= 2
    assert handed_back > 0


def test_timeout_ends_timed_out_and_retries(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.too_slow.delay("slow")
    with pytest.raises(TimeoutError):
        future.result(timeout=120)
    names = state_names(stack.states(future.run_id))
    assert names[-1] == "TimedOut"
    assert "AwaitingRetry" in names
    assert "Retrying" in names
    assert count_lines(stack.home / "too_slow.log") == 2
