"""Properties that hold over random sequences of proposals (hypothesis)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.policies import (
    BackgroundTaskPolicy,
    CoreTaskPolicy,
    MinimalTaskPolicy,
    OrchestrationPolicy,
    TaskgateBackgroundTaskPolicy,
    TaskgateCoreTaskPolicy,
)
from policy.result import SetStateStatus
from policy.rules.concurrency import SLOT_HOLDING_STATES
from policy.runs import TaskRun, TaskRunPolicy
from policy.states import (
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    State,
    StateType,
)
from tests.policy.harness import Bench, task_run

STATE_NAMES = [
    "Scheduled",
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Cancelled",
    "Crashed",
    "Paused",
    "Cancelling",
]
CORE_POLICIES = [
    CoreTaskPolicy,
    TaskgateCoreTaskPolicy,
    BackgroundTaskPolicy,
    TaskgateBackgroundTaskPolicy,
]
SLOT_POLICIES = [CoreTaskPolicy, TaskgateCoreTaskPolicy, TaskgateBackgroundTaskPolicy]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Step:
    """One random proposal: which run, which state, and how the clock moves first."""

    run_index: int
    state_name: str
    advance_seconds: float
    persisted: bool
    due_in_seconds: float
    cache_key: str | None
    retriable: bool


steps = st.builds(
    Step,
    run_index=st.integers(0, 2),
    state_name=st.sampled_from(STATE_NAMES),
    advance_seconds=st.sampled_from([0, 0.4, 1, 3]),
    persisted=st.booleans(),
    due_in_seconds=st.sampled_from([0, 0, 2]),
    cache_key=st.sampled_from([None, None, "k1", "k2"]),
    retriable=st.booleans(),
)


def build_state(step: Step, now) -> State:
    details = {"timestamp": now}
    if step.state_name == "Scheduled":
        return Scheduled(now + timedelta(seconds=step.due_in_seconds), **details)
    if step.state_name == "Running":
        return Running(cache_key=step.cache_key, **details)
    if step.state_name == "Completed":
        data = {"type": "result", "value": 1} if step.persisted else {"type": "unpersisted"}
        return Completed(data=data, cache_key=step.cache_key, **details)
    if step.state_name == "Failed":
        return Failed(retriable=None if step.retriable else False, **details)
    makers = {
        "Pending": Pending,
        "Cancelled": Cancelled,
        "Crashed": Crashed,
        "Paused": Paused,
        "Cancelling": Cancelling,
    }
    return makers[step.state_name](**details)


def new_runs(policy: OrchestrationPolicy, retries: int) -> list[TaskRun]:
    is_background = policy in (BackgroundTaskPolicy, TaskgateBackgroundTaskPolicy)
    return [
        task_run(
            is_background=is_background,
            tags=["db", "api"],
            empirical_policy=TaskRunPolicy(retries=retries, retry_delay=1),
        )
        for _ in range(3)
    ]


async def drive(bench: Bench, runs, policy, plan, check) -> None:
    """Apply every step of `plan`, calling `check(run, before, result, after)` after each."""
    for step in plan:
        bench.clock.advance(step.advance_seconds)
        run = runs[step.run_index]
        before = run.state
        history_before = len(bench.written(run))
        result = await bench.propose(
            run, build_state(step, bench.clock.now()), policy, actor="service"
        )
        check(run, before, result, history_before)


@PROPERTY_SETTINGS
@given(policy=st.sampled_from(CORE_POLICIES), plan=st.lists(steps, max_size=40))
def test_persisted_completed_is_never_left(policy, plan):
    bench = Bench()
    runs = new_runs(policy, retries=1)

    def check(run, before, result, history_before):
        if before is not None and before.is_completed() and before.has_persisted_result():
            assert run.state.id == before.id
            assert len(bench.written(run)) == history_before

    asyncio.run(drive(bench, runs, policy, plan, check))


async def test_minimal_policy_can_leave_completed():
    bench = Bench()
    run = task_run()
    bench.place(run, Completed(data={"type": "result", "value": 1}))

    result = await bench.propose(run, Running(), MinimalTaskPolicy)

    assert result.status is SetStateStatus.ACCEPT
    assert run.state_type is StateType.RUNNING


@PROPERTY_SETTINGS
@given(policy=st.sampled_from(CORE_POLICIES), plan=st.lists(steps, max_size=40))
def test_run_count_counts_running_since_reset(policy, plan):
    bench = Bench()
    runs = new_runs(policy, retries=2)
    expected = {run.id: 0 for run in runs}

    def check(run, before, result, history_before):
        wrote = len(bench.written(run)) > history_before
        if wrote:
            written = run.state
            if before is not None and before.is_final() and not written.is_final():
                expected[run.id] = 0
            if written.type is StateType.RUNNING:
                expected[run.id] += 1
        assert run.run_count == expected[run.id]

    asyncio.run(drive(bench, runs, policy, plan, check))


@PROPERTY_SETTINGS
@given(
    policy=st.sampled_from([*CORE_POLICIES, MinimalTaskPolicy]), plan=st.lists(steps, max_size=40)
)
def test_wait_and_abort_never_write(policy, plan):
    bench = Bench(limits={"db": 1, "api": 2})
    runs = new_runs(policy, retries=1)

    def check(run, before, result, history_before):
        if result.status in (SetStateStatus.WAIT, SetStateStatus.ABORT):
            assert len(bench.written(run)) == history_before
            assert run.state is before
            assert bench.last_context.enqueue_intents == []
        if result.status is SetStateStatus.WAIT:
            assert result.delay_seconds > 0

    asyncio.run(drive(bench, runs, policy, plan, check))


@PROPERTY_SETTINGS
@given(
    policy=st.sampled_from(SLOT_POLICIES),
    limits=st.fixed_dictionaries({"db": st.integers(0, 2), "api": st.integers(1, 3)}),
    plan=st.lists(steps, max_size=40),
)
def test_slots_held_by_running_runs(policy, limits, plan):
    bench = Bench(limits=limits)
    runs = new_runs(policy, retries=1)

    def check(run, before, result, history_before):
        holding = {other.id for other in runs if other.state_type in SLOT_HOLDING_STATES}
        running = {other.id for other in runs if other.state_type is StateType.RUNNING}
        for tag, limit in limits.items():
            holders = bench.slots.holders(tag)
            assert holders <= holding
            assert running <= holders
            assert len(holders) <= limit

    asyncio.run(drive(bench, runs, policy, plan, check))


@PROPERTY_SETTINGS
@given(
    policy=st.sampled_from(CORE_POLICIES),
    retries=st.integers(0, 3),
    plan=st.lists(steps, max_size=50),
)
def test_retries_never_exceed_limit(policy, retries, plan):
    bench = Bench()
    runs = new_runs(policy, retries=retries)
    granted = {run.id: 0 for run in runs}

    def check(run, before, result, history_before):
        if before is not None and before.is_final() and not run.state.is_final():
            granted[run.id] = 0
        if result.rule == "RetryFailedTasks":
            granted[run.id] += 1
        assert granted[run.id] <= retries

    asyncio.run(drive(bench, runs, policy, plan, check))


async def _attempts_until_failed(policy: OrchestrationPolicy, retries: int) -> int:
    bench = Bench()
    run = task_run(
        is_background=policy is TaskgateBackgroundTaskPolicy,
        empirical_policy=TaskRunPolicy(retries=retries, retry_delay=[1, 2]),
    )
    await bench.propose(run, Scheduled(bench.clock.now()), policy, actor="client")
    attempts = 0
    while not run.state.is_final():
        bench.clock.advance(5)
        claim = Pending(claimed_state_id=run.state.id, timestamp=bench.clock.now())
        await bench.propose(run, claim, policy)
        token = run.claim_token
        started = await bench.propose(
            run, Running(claim_token=token, timestamp=bench.clock.now()), policy
        )
        assert started.status is SetStateStatus.ACCEPT
        attempts += 1
        await bench.propose(run, Failed(claim_token=token, timestamp=bench.clock.now()), policy)
    return attempts


async def test_worker_loop_makes_retries_plus_one_attempts():
    for retries in range(4):
        attempts = await _attempts_until_failed(TaskgateBackgroundTaskPolicy, retries)
        assert attempts == retries + 1
