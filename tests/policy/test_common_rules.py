"""Rules shared by task runs and flow runs: duplicates, Pending, scheduled times."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from policy.policies import OrchestrationPolicy
from policy.result import SetStateStatus
from policy.rules import (
    CopyScheduledTime,
    PreventDuplicateTransitions,
    PreventPendingTransitions,
    WaitForScheduledTime,
)
from policy.rules.common import rounded_delay_seconds
from policy.states import (
    Cancelled,
    Cancelling,
    Pending,
    Running,
    Scheduled,
    StateType,
)
from tests.policy.harness import T0, Bench, task_run


def only(rule) -> OrchestrationPolicy:
    return OrchestrationPolicy(rule.__name__, (rule,))


async def test_duplicate_transition_returns_current_state():
    bench = Bench()
    run = task_run()
    transition_id = uuid4()
    current = bench.place(run, Running(timestamp=T0, transition_id=transition_id))

    result = await bench.propose(
        run, Running(timestamp=T0, transition_id=transition_id), only(PreventDuplicateTransitions)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.id == current.id
    assert bench.written(run) == [current]


async def test_new_transition_id_is_accepted():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0, transition_id=uuid4()))

    result = await bench.propose(
        run, Running(timestamp=T0, transition_id=uuid4()), only(PreventDuplicateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_missing_transition_ids_are_accepted():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(PreventDuplicateTransitions))

    assert result.status is SetStateStatus.ACCEPT


async def test_duplicate_check_passes_first_state():
    bench = Bench()
    run = task_run()

    result = await bench.propose(
        run, Scheduled(T0, transition_id=uuid4()), only(PreventDuplicateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT


@pytest.mark.parametrize("current", [Pending, Running, Cancelling, Cancelled])
async def test_pending_from_submitted_state_aborts(current):
    bench = Bench()
    run = task_run()
    bench.place(run, current(timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0), only(PreventPendingTransitions))

    assert result.status is SetStateStatus.ABORT
    assert "cannot move to a PENDING state" in result.reason


async def test_pending_sub_state_is_accepted():
    bench = Bench()
    run = task_run()
    due = T0 + timedelta(seconds=30)
    lease_id = uuid4()
    bench.place(
        run, Pending(timestamp=T0, scheduled_time=due, deployment_concurrency_lease_id=lease_id)
    )

    result = await bench.propose(
        run, Pending(name="Submitting", timestamp=T0), only(PreventPendingTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.state_details.scheduled_time == due
    assert result.state.state_details.deployment_concurrency_lease_id == lease_id


async def test_pending_same_name_aborts():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(name="Submitting", timestamp=T0))

    result = await bench.propose(
        run, Pending(name="Submitting", timestamp=T0), only(PreventPendingTransitions)
    )

    assert result.status is SetStateStatus.ABORT


async def test_pending_named_pending_aborts():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(name="Submitting", timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0), only(PreventPendingTransitions))

    assert result.status is SetStateStatus.ABORT


async def test_pending_from_scheduled_is_not_guarded():
    bench = Bench()
    run = task_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0), only(PreventPendingTransitions))

    assert result.status is SetStateStatus.ACCEPT


async def test_scheduled_time_copied_to_pending():
    bench = Bench()
    run = task_run()
    due = T0 + timedelta(minutes=5)
    bench.place(run, Scheduled(due, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0), only(CopyScheduledTime))

    assert result.state.state_details.scheduled_time == due


async def test_proposed_scheduled_time_is_kept():
    bench = Bench()
    run = task_run()
    own = T0 + timedelta(minutes=9)
    bench.place(run, Scheduled(T0 + timedelta(minutes=5), timestamp=T0))

    result = await bench.propose(
        run, Pending(timestamp=T0, scheduled_time=own), only(CopyScheduledTime)
    )

    assert result.state.state_details.scheduled_time == own


@pytest.mark.parametrize(
    ("ahead_seconds", "expected_wait"),
    [(0.4, None), (0.5, None), (0.6, 1), (1.5, 1), (1.6, 2), (2.5, 2), (10, 10)],
)
async def test_wait_for_scheduled_time_rounding(ahead_seconds, expected_wait):
    bench = Bench()
    run = task_run()
    bench.place(run, Scheduled(T0 + timedelta(seconds=ahead_seconds), timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(WaitForScheduledTime))

    if expected_wait is None:
        assert result.status is SetStateStatus.ACCEPT
    else:
        assert result.status is SetStateStatus.WAIT
        assert result.delay_seconds == expected_wait
        assert result.reason == "Scheduled time is in the future."


async def test_past_scheduled_time_does_not_wait():
    bench = Bench()
    run = task_run()
    bench.place(run, Scheduled(T0 - timedelta(seconds=3.7), timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(WaitForScheduledTime))

    assert result.status is SetStateStatus.ACCEPT


async def test_pending_with_scheduled_time_waits():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0, scheduled_time=T0 + timedelta(seconds=5)))

    result = await bench.propose(run, Running(timestamp=T0), only(WaitForScheduledTime))

    assert result.status is SetStateStatus.WAIT
    assert result.delay_seconds == 5


async def test_pending_without_scheduled_time_runs():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(WaitForScheduledTime))

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.type is StateType.RUNNING


async def test_clock_advance_ends_wait():
    bench = Bench()
    run = task_run()
    bench.place(run, Scheduled(T0 + timedelta(seconds=5), timestamp=T0))

    bench.clock.advance(5)
    result = await bench.propose(
        run, Running(timestamp=bench.clock.now()), only(WaitForScheduledTime)
    )

    assert result.status is SetStateStatus.ACCEPT


def test_rounded_delay_negative_half_second():
    assert rounded_delay_seconds(timedelta(seconds=-0.4)) == 0
    assert rounded_delay_seconds(timedelta(seconds=-2)) == -2
