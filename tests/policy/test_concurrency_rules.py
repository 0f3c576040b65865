"""Tag concurrency slots: taking them on entering Running and releasing them after."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from policy.context import PolicySettings
from policy.policies import OrchestrationPolicy
from policy.result import SetStateStatus
from policy.rules import (
    ReleaseTaskConcurrencySlots,
    SecureTaskConcurrencySlots,
    WaitForScheduledTime,
)
from policy.states import Cancelled, Cancelling, Completed, Failed, Pending, Running, Scheduled
from tests.policy.harness import T0, Bench, task_run

SECURE = OrchestrationPolicy("Secure", (SecureTaskConcurrencySlots, ReleaseTaskConcurrencySlots))


async def test_run_without_limits_starts():
    bench = Bench()
    run = task_run(tags=["untracked"])

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.ACCEPT


async def test_free_slots_are_taken_per_tag():
    bench = Bench(limits={"db": 2, "api": 1})
    run = task_run(tags=["db", "api"])

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.ACCEPT
    assert bench.slots.holders("db") == {run.id}
    assert bench.slots.holders("api") == {run.id}


async def test_full_limit_waits_and_holds_nothing():
    bench = Bench(
        limits={"db": 2, "api": 1}, settings=PolicySettings(tag_concurrency_slot_wait_seconds=7)
    )
    other = uuid4()
    await bench.slots.take_slot("api", other)
    run = task_run(tags=["db", "api"])
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.WAIT
    assert result.delay_seconds == 7
    assert result.rule == "SecureTaskConcurrencySlots"
    assert '"api"' in result.reason
    assert bench.slots.holders("db") == set()
    assert bench.slots.holders("api") == {other}
    assert bench.written(run) == [current]


async def test_zero_limit_aborts_before_taking_slots():
    bench = Bench(limits={"db": 2, "frozen": 0})
    run = task_run(tags=["db", "frozen"])

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.ABORT
    assert '"frozen"' in result.reason
    assert bench.slots.holders("db") == set()


async def test_zero_limit_aborts_even_when_another_is_full():
    bench = Bench(limits={"full": 1, "frozen": 0})
    await bench.slots.take_slot("full", uuid4())
    run = task_run(tags=["full", "frozen"])

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.ABORT


async def test_held_slot_is_not_taken_twice():
    bench = Bench(limits={"db": 1})
    run = task_run(tags=["db"])
    await bench.slots.take_slot("db", run.id)
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), SECURE)

    assert result.status is SetStateStatus.ACCEPT
    assert bench.slots.holders("db") == {run.id}


async def test_fizzled_secure_releases_slots():
    bench = Bench(limits={"db": 1})
    run = task_run(tags=["db"])
    bench.place(run, Scheduled(T0 + timedelta(seconds=30), timestamp=T0))
    policy = OrchestrationPolicy(
        "SecureThenWait",
        (SecureTaskConcurrencySlots, WaitForScheduledTime, ReleaseTaskConcurrencySlots),
    )

    result = await bench.propose(run, Running(timestamp=T0), policy)

    assert result.status is SetStateStatus.WAIT
    assert result.rule == "WaitForScheduledTime"
    assert bench.slots.holders("db") == set()


@pytest.mark.parametrize("leaving_to", [Completed, Failed, Cancelled, Pending])
async def test_leaving_running_releases_slots(leaving_to):
    bench = Bench(limits={"db": 1})
    run = task_run(tags=["db"])
    await bench.propose(run, Running(timestamp=T0), SECURE)

    await bench.propose(run, leaving_to(timestamp=T0), SECURE)

    assert bench.slots.holders("db") == set()


async def test_cancelling_keeps_slots():
    bench = Bench(limits={"db": 1})
    run = task_run(tags=["db"])
    await bench.propose(run, Running(timestamp=T0), SECURE)

    await bench.propose(run, Cancelling(timestamp=T0), SECURE)

    assert bench.slots.holders("db") == {run.id}


async def test_nullified_transition_keeps_slots():
    bench = Bench(limits={"db": 1})
    run = task_run(tags=["db"])
    await bench.propose(run, Running(timestamp=T0), SECURE)

    class StayPut(SecureTaskConcurrencySlots):
        async def before_transition(self, initial_state, proposed_state, context):
            await self.reject_transition(None, "stay")

    stay = OrchestrationPolicy("Stay", (StayPut, ReleaseTaskConcurrencySlots))

    result = await bench.propose(run, Running(timestamp=T0), stay)

    assert result.status is SetStateStatus.REJECT
    assert bench.slots.holders("db") == {run.id}


async def test_freed_slot_lets_next_run_start():
    bench = Bench(limits={"db": 1})
    first = task_run(tags=["db"])
    second = task_run(tags=["db"])
    await bench.propose(first, Running(timestamp=T0), SECURE)

    waiting = await bench.propose(second, Running(timestamp=T0), SECURE)
    await bench.propose(first, Completed(timestamp=T0), SECURE)
    started = await bench.propose(second, Running(timestamp=T0), SECURE)

    assert waiting.status is SetStateStatus.WAIT
    assert started.status is SetStateStatus.ACCEPT
    assert bench.slots.holders("db") == {second.id}
