"""Claim fencing over random interleavings of two workers and the service (hypothesis)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.policies import TaskgateBackgroundTaskPolicy
from policy.result import SetStateStatus
from policy.runs import TaskRunPolicy
from policy.states import AwaitingConcurrencySlot, Completed, Failed, Pending, Running, Scheduled
from tests.policy.harness import Bench, background_run

POLICY = TaskgateBackgroundTaskPolicy

actions = st.lists(
    st.tuples(
        st.sampled_from(["worker-1", "worker-2", "service"]),
        st.sampled_from(["claim", "claim-old", "run", "complete", "fail", "hand-back"]),
    ),
    max_size=40,
)


class Worker:
    """What one worker process remembers: the job it took and the token of its claim."""

    def __init__(self) -> None:
        self.job_state_id = None
        self.token = None


async def play(plan) -> None:
    bench = Bench()
    run = background_run(empirical_policy=TaskRunPolicy(retries=2))
    await bench.propose(run, Scheduled(bench.clock.now()), POLICY, actor="client")
    workers = {"worker-1": Worker(), "worker-2": Worker()}
    first_scheduled_id = run.state.id

    for actor, action in plan:
        if actor == "service":
            # The service releases the run to its queue and clears the claim token.
            run.claim_token = None
            await bench.propose(run, Scheduled(bench.clock.now()), POLICY, actor="service")
            continue

        worker = workers[actor]
        if action in ("claim", "claim-old"):
            if action == "claim" and run.state.is_scheduled():
                worker.job_state_id = run.state.id
            elif action == "claim-old":
                worker.job_state_id = first_scheduled_id
            if worker.job_state_id is None:
                continue
            claim = Pending(claimed_state_id=worker.job_state_id)
            result = await bench.propose(run, claim, POLICY)
            if result.status is SetStateStatus.ACCEPT:
                worker.token = result.state.state_details.claim_token
            continue

        proposals = {
            "run": Running,
            "complete": lambda **details: Completed(data={"type": "unpersisted"}, **details),
            "fail": Failed,
            "hand-back": lambda **details: AwaitingConcurrencySlot(bench.clock.now(), **details),
        }
        current_token = run.claim_token
        history_before = len(bench.written(run))
        result = await bench.propose(run, proposals[action](claim_token=worker.token), POLICY)

        wrote = len(bench.written(run)) > history_before
        if wrote:
            # Only the holder of the run's current claim moves it.
            assert worker.token is not None or current_token is None
            assert worker.token == current_token
        if worker.token != current_token:
            assert result.status is SetStateStatus.ABORT


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=actions)
def test_only_current_claim_moves_run(plan):
    asyncio.run(play(plan))
