"""Whole background-run lifecycles as a worker drives them, under the default policy."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from policy.policies import BackgroundTaskPolicy, TaskgateBackgroundTaskPolicy
from policy.result import SetStateStatus
from policy.runs import TaskRunPolicy
from policy.states import (
    AwaitingConcurrencySlot,
    Completed,
    Failed,
    Pending,
    Running,
    Scheduled,
    StateType,
)
from tests.policy.harness import Bench, background_run

POLICY = TaskgateBackgroundTaskPolicy
RESULT = {"type": "result", "serializer": "json", "value": 3}


async def submit(bench: Bench, run, due_in_seconds: float = 0):
    due = bench.clock.now() + timedelta(seconds=due_in_seconds)
    state = Scheduled(due, timestamp=bench.clock.now(), deferred=True, transition_id=uuid4())
    return await bench.propose(run, state, POLICY, actor="client")


async def claim(bench: Bench, run, state_id=None):
    claimed_state_id = state_id or run.state.id
    pending = Pending(claimed_state_id=claimed_state_id, timestamp=bench.clock.now())
    return await bench.propose(run, pending, POLICY)


async def start(bench: Bench, run, token, **details):
    running = Running(claim_token=token, timestamp=bench.clock.now(), **details)
    return await bench.propose(run, running, POLICY)


async def test_happy_path_completes():
    bench = Bench()
    run = background_run()

    submitted = await submit(bench, run)
    claimed = await claim(bench, run)
    token = claimed.state.state_details.claim_token
    started = await start(bench, run, token)
    bench.clock.advance(2)
    finished = await bench.propose(
        run, Completed(claim_token=token, data=RESULT, timestamp=bench.clock.now()), POLICY
    )

    assert submitted.status is SetStateStatus.ACCEPT
    assert claimed.status is SetStateStatus.ACCEPT
    assert started.status is SetStateStatus.ACCEPT
    assert finished.status is SetStateStatus.ACCEPT
    assert [state.name for state in bench.written(run)] == [
        "Scheduled",
        "Pending",
        "Running",
        "Completed",
    ]
    assert run.run_count == 1
    assert run.total_run_time == 2


async def test_second_claimer_is_aborted():
    bench = Bench()
    run = background_run()
    await submit(bench, run)
    scheduled_id = run.state.id

    first = await claim(bench, run, scheduled_id)
    second = await claim(bench, run, scheduled_id)

    assert first.status is SetStateStatus.ACCEPT
    assert second.status is SetStateStatus.ABORT
    assert run.claim_token == first.state.state_details.claim_token


async def test_resent_claim_returns_same_claim():
    bench = Bench()
    run = background_run()
    await submit(bench, run)
    claim_state = Pending(
        claimed_state_id=run.state.id, transition_id=uuid4(), timestamp=bench.clock.now()
    )

    first = await bench.propose(run, claim_state.model_copy(deep=True), POLICY)
    resent = await bench.propose(run, claim_state.model_copy(deep=True), POLICY)

    assert resent.status is SetStateStatus.REJECT
    assert resent.state.id == first.state.id
    assert resent.state.state_details.claim_token == run.claim_token


async def test_future_run_waits_for_its_time():
    bench = Bench()
    run = background_run()
    await submit(bench, run, due_in_seconds=30)
    claimed = await claim(bench, run)

    early = await start(bench, run, claimed.state.state_details.claim_token)
    bench.clock.advance(30)
    on_time = await start(bench, run, claimed.state.state_details.claim_token)

    assert early.status is SetStateStatus.WAIT
    assert early.delay_seconds == 30
    assert on_time.status is SetStateStatus.ACCEPT


async def test_retry_is_enqueued_and_named_retrying():
    bench = Bench()
    run = background_run(empirical_policy=TaskRunPolicy(retries=1, retry_delay=10))
    await submit(bench, run)
    token = (await claim(bench, run)).state.state_details.claim_token
    await start(bench, run, token)

    failed = await bench.propose(
        run, Failed(claim_token=token, timestamp=bench.clock.now()), POLICY
    )
    intents = bench.last_context.enqueue_intents
    bench.clock.advance(10)
    token = (await claim(bench, run, intents[0].state_id)).state.state_details.claim_token
    retried = await start(bench, run, token)

    assert failed.status is SetStateStatus.REJECT
    assert failed.state.name == "AwaitingRetry"
    assert intents[0].state_name == "AwaitingRetry"
    assert retried.status is SetStateStatus.ACCEPT
    assert retried.state.name == "Retrying"
    assert run.run_count == 2


async def test_retry_handed_back_stays_retrying():
    bench = Bench(limits={"db": 1})
    blocker = background_run(tags=["db"])
    run = background_run(tags=["db"], empirical_policy=TaskRunPolicy(retries=1))
    await submit(bench, run)
    token = (await claim(bench, run)).state.state_details.claim_token
    await start(bench, run, token)
    await bench.propose(run, Failed(claim_token=token, timestamp=bench.clock.now()), POLICY)
    await submit(bench, blocker)
    blocker_token = (await claim(bench, blocker)).state.state_details.claim_token
    await start(bench, blocker, blocker_token)

    token = (await claim(bench, run)).state.state_details.claim_token
    refused = await start(bench, run, token)
    due = bench.clock.now() + timedelta(seconds=refused.delay_seconds)
    handed_back = await bench.propose(
        run,
        AwaitingConcurrencySlot(due, claim_token=token, timestamp=bench.clock.now()),
        POLICY,
    )
    await bench.propose(
        blocker,
        Completed(claim_token=blocker_token, data=RESULT, timestamp=bench.clock.now()),
        POLICY,
    )
    bench.clock.advance(refused.delay_seconds)
    token = (await claim(bench, run)).state.state_details.claim_token
    retried = await start(bench, run, token)

    assert refused.status is SetStateStatus.WAIT
    assert refused.rule == "SecureTaskConcurrencySlots"
    assert handed_back.status is SetStateStatus.ACCEPT
    assert bench.last_context.enqueue_intents == []
    assert retried.status is SetStateStatus.ACCEPT
    assert retried.state.name == "Retrying"
    assert bench.slots.holders("db") == {run.id}


async def test_cache_isolation_hands_back_then_hits_cache():
    bench = Bench()
    isolated = TaskRunPolicy(cache_isolation=True)
    first = background_run(empirical_policy=isolated)
    second = background_run(empirical_policy=isolated)
    for run in (first, second):
        await submit(bench, run)
    first_token = (await claim(bench, first)).state.state_details.claim_token
    await start(bench, first, first_token, cache_key="add-1-2")

    second_token = (await claim(bench, second)).state.state_details.claim_token
    waited = await start(bench, second, second_token, cache_key="add-1-2")
    await bench.propose(
        second,
        AwaitingConcurrencySlot(bench.clock.now(), claim_token=second_token),
        POLICY,
    )
    await bench.propose(
        first,
        Completed(claim_token=first_token, data=RESULT, cache_key="add-1-2"),
        POLICY,
    )
    second_token = (await claim(bench, second)).state.state_details.claim_token
    cached = await start(bench, second, second_token, cache_key="add-1-2")

    assert waited.status is SetStateStatus.WAIT
    assert waited.rule == "CacheIsolation"
    assert cached.status is SetStateStatus.REJECT
    assert cached.state.name == "Cached"
    assert cached.state.type is StateType.COMPLETED
    assert cached.state.data == RESULT
    assert second.run_count == 0


async def test_frozen_worker_is_fenced_off():
    bench = Bench()
    run = background_run()
    await submit(bench, run)
    stale_token = (await claim(bench, run)).state.state_details.claim_token
    await start(bench, run, stale_token)

    # The service reaps the run and clears the token; another worker takes it.
    run.claim_token = None
    await bench.propose(run, Scheduled(bench.clock.now()), POLICY, actor="service")
    fresh_token = (await claim(bench, run)).state.state_details.claim_token
    late = await bench.propose(run, Completed(claim_token=stale_token, data=RESULT), POLICY)

    assert late.status is SetStateStatus.ABORT
    assert run.claim_token == fresh_token
    assert run.state_type is StateType.PENDING


async def test_reference_policy_runs_without_claims():
    bench = Bench()
    run = background_run(empirical_policy=TaskRunPolicy(retries=1))

    await bench.propose(run, Scheduled(bench.clock.now(), deferred=True), BackgroundTaskPolicy)
    await bench.propose(run, Pending(), BackgroundTaskPolicy)
    again = await bench.propose(run, Pending(), BackgroundTaskPolicy)
    started = await bench.propose(run, Running(), BackgroundTaskPolicy)
    failed = await bench.propose(run, Failed(), BackgroundTaskPolicy)

    assert again.status is SetStateStatus.ABORT
    assert started.status is SetStateStatus.ACCEPT
    assert failed.state.name == "AwaitingRetry"
    assert [intent.state_name for intent in bench.last_context.enqueue_intents] == ["AwaitingRetry"]
