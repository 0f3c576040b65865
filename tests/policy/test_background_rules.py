"""The claim check and the enqueue of Scheduled background runs."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from policy.policies import OrchestrationPolicy, TaskgateBackgroundTaskPolicy
from policy.result import SetStateStatus
from policy.rules import EnforceClaim, EnqueueScheduledTasks
from policy.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Completed,
    Failed,
    Pending,
    Running,
    Scheduled,
)
from tests.policy.harness import T0, Bench, background_run, retrying_policy, task_run

CLAIM = OrchestrationPolicy("Claim", (EnforceClaim,))
ENQUEUE = OrchestrationPolicy("Enqueue", (EnqueueScheduledTasks,))


async def claimed(bench: Bench, run, policy=CLAIM):
    """Claim the run's current Scheduled state and return the claim token."""
    result = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=run.state.id), policy)
    assert result.status is SetStateStatus.ACCEPT
    return run.claim_token


async def test_claim_of_current_state_mints_token():
    bench = Bench()
    run = background_run()
    scheduled = bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=scheduled.id), CLAIM)

    assert result.status is SetStateStatus.ACCEPT
    assert run.claim_token is not None
    assert result.state.state_details.claim_token == run.claim_token
    assert result.state.state_details.claimed_state_name == "Scheduled"


async def test_claim_of_stale_state_aborts():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=uuid4()), CLAIM)

    assert result.status is SetStateStatus.ABORT
    assert result.rule == "EnforceClaim"
    assert "another worker claimed the run" in result.reason
    assert run.claim_token is None


async def test_claim_without_state_id_aborts():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0), CLAIM)

    assert result.status is SetStateStatus.ABORT


async def test_second_claim_gets_new_token():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    first = await claimed(bench, run)
    bench.place(run, AwaitingRetry(T0, timestamp=T0))

    second = await claimed(bench, run)

    assert second != first


async def test_claim_records_retry_origin():
    bench = Bench()
    run = background_run()
    bench.place(run, AwaitingRetry(T0, timestamp=T0))

    result = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=run.state.id), CLAIM)

    assert result.state.state_details.claimed_state_name == "AwaitingRetry"


async def test_hand_back_keeps_retry_origin():
    bench = Bench()
    run = background_run()
    bench.place(run, AwaitingRetry(T0, timestamp=T0))
    token = await claimed(bench, run)

    hand_back = await bench.propose(
        run,
        AwaitingConcurrencySlot(T0 + timedelta(seconds=10), timestamp=T0, claim_token=token),
        CLAIM,
    )
    reclaim = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=run.state.id), CLAIM)

    assert hand_back.status is SetStateStatus.ACCEPT
    assert hand_back.state.state_details.claimed_state_name == "AwaitingRetry"
    assert reclaim.state.state_details.claimed_state_name == "AwaitingRetry"


async def test_hand_back_of_first_attempt_has_no_origin():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    token = await claimed(bench, run)

    hand_back = await bench.propose(
        run, AwaitingConcurrencySlot(T0, timestamp=T0, claim_token=token), CLAIM
    )
    reclaim = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=run.state.id), CLAIM)

    assert hand_back.state.state_details.claimed_state_name is None
    assert reclaim.state.state_details.claimed_state_name == "AwaitingConcurrencySlot"


async def test_proposal_with_current_token_is_accepted():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    token = await claimed(bench, run)

    result = await bench.propose(run, Running(timestamp=T0, claim_token=token), CLAIM)

    assert result.status is SetStateStatus.ACCEPT


async def test_proposal_with_other_token_aborts():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    await claimed(bench, run)

    result = await bench.propose(run, Running(timestamp=T0, claim_token=uuid4()), CLAIM)

    assert result.status is SetStateStatus.ABORT
    assert "claim token" in result.reason


async def test_proposal_without_token_on_claimed_run_aborts():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    await claimed(bench, run)

    result = await bench.propose(run, Completed(timestamp=T0), CLAIM)

    assert result.status is SetStateStatus.ABORT


async def test_token_after_service_cleared_it_aborts():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    token = await claimed(bench, run)
    run.claim_token = None  # the service released the run

    result = await bench.propose(run, Running(timestamp=T0, claim_token=token), CLAIM)

    assert result.status is SetStateStatus.ABORT


async def test_unclaimed_run_without_token_passes():
    bench = Bench()
    run = background_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), CLAIM)

    assert result.status is SetStateStatus.ACCEPT


@pytest.mark.parametrize("actor", ["service", "operator", "client"])
async def test_non_worker_proposals_are_not_checked(actor):
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))
    await claimed(bench, run)

    result = await bench.propose(run, Failed(timestamp=T0), CLAIM, actor=actor)

    assert result.status is SetStateStatus.ACCEPT


async def test_fizzled_claim_restores_token():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    class AbortPending(EnforceClaim):
        async def before_transition(self, initial_state, proposed_state, context):
            await self.abort_transition("no")

    policy = OrchestrationPolicy("ClaimThenAbort", (EnforceClaim, AbortPending))
    result = await bench.propose(run, Pending(timestamp=T0, claimed_state_id=run.state.id), policy)

    assert result.status is SetStateStatus.ABORT
    assert run.claim_token is None


async def test_scheduled_background_run_is_enqueued():
    bench = Bench()
    run = background_run()
    due = T0 + timedelta(minutes=2)

    result = await bench.propose(
        run, Scheduled(due, timestamp=T0, deferred=True), ENQUEUE, actor="client"
    )

    intents = bench.last_context.enqueue_intents
    assert len(intents) == 1
    assert intents[0].run_id == run.id
    assert intents[0].task_key == run.task_key
    assert intents[0].state_id == result.state.id
    assert intents[0].state_name == "Scheduled"
    assert intents[0].scheduled_time == due


async def test_retry_of_background_run_is_enqueued():
    bench = Bench()
    run = background_run(run_count=1, empirical_policy=retrying_policy(1, retry_delay=5))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(
        run, Failed(timestamp=T0), TaskgateBackgroundTaskPolicy, actor="service"
    )

    intents = bench.last_context.enqueue_intents
    assert result.state.name == "AwaitingRetry"
    assert [intent.state_id for intent in intents] == [result.state.id]
    assert intents[0].state_name == "AwaitingRetry"
    assert intents[0].scheduled_time == T0 + timedelta(seconds=5)


async def test_forced_scheduled_background_run_is_enqueued():
    bench = Bench()
    run = background_run()
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose(run, Scheduled(T0, timestamp=T0), force=True, actor="operator")

    assert result.status is SetStateStatus.ACCEPT
    assert [intent.state_id for intent in bench.last_context.enqueue_intents] == [result.state.id]


async def test_run_in_flow_is_not_enqueued():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Scheduled(T0, timestamp=T0), ENQUEUE)

    assert bench.last_context.enqueue_intents == []


async def test_non_scheduled_state_is_not_enqueued():
    bench = Bench()
    run = background_run()

    await bench.propose(run, Pending(timestamp=T0), ENQUEUE)

    assert bench.last_context.enqueue_intents == []


async def test_nullified_scheduled_is_not_enqueued():
    bench = Bench()
    run = background_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose(
        run, Scheduled(T0, timestamp=T0), TaskgateBackgroundTaskPolicy, actor="worker"
    )

    # A worker proposal without the claim token on a claimed run would abort; here
    # the run is unclaimed, so the duplicate Scheduled is simply written.
    assert result.status is SetStateStatus.ACCEPT
    assert len(bench.last_context.enqueue_intents) == 1

    run.claim_token = uuid4()
    result = await bench.propose(run, Scheduled(T0, timestamp=T0), TaskgateBackgroundTaskPolicy)

    assert result.status is SetStateStatus.ABORT
    assert bench.last_context.enqueue_intents == []
