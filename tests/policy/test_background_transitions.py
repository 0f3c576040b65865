"""Every transition a background run can make under taskgate's background policy.

Each row is (current state, proposed state, expected status, resulting state name).
The worker proposes with the run's current claim token and, for a claim, names the
Scheduled state it claims. The run may retry once; it has run once when it is in
Running, Cancelling or a final state. A Completed state carries a persisted result.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from policy.policies import TaskgateBackgroundTaskPolicy
from policy.result import SetStateStatus
from policy.runs import TaskRunPolicy
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
from tests.policy.harness import T0, Bench, background_run

RESULT = {"type": "result", "serializer": "json", "value": 5}

MAKERS = {
    "Scheduled": lambda: Scheduled(T0, timestamp=T0),
    "Pending": lambda: Pending(timestamp=T0),
    "Running": lambda: Running(timestamp=T0),
    "Completed": lambda: Completed(timestamp=T0, data=RESULT),
    "Failed": lambda: Failed(timestamp=T0),
    "Cancelled": lambda: Cancelled(timestamp=T0),
    "Crashed": lambda: Crashed(timestamp=T0),
    "Paused": lambda: Paused(timestamp=T0),
    "Cancelling": lambda: Cancelling(timestamp=T0),
}

HAS_RUN = {"Running", "Cancelling", "Completed", "Failed", "Cancelled", "Crashed"}

ACCEPT = SetStateStatus.ACCEPT
REJECT = SetStateStatus.REJECT
ABORT = SetStateStatus.ABORT

TRANSITIONS = [
    # A new run: every first state is accepted.
    (None, "Scheduled", ACCEPT, "Scheduled"),
    (None, "Pending", ACCEPT, "Pending"),
    (None, "Running", ACCEPT, "Running"),
    (None, "Completed", ACCEPT, "Completed"),
    (None, "Failed", ACCEPT, "Failed"),
    (None, "Cancelled", ACCEPT, "Cancelled"),
    (None, "Crashed", ACCEPT, "Crashed"),
    (None, "Paused", ACCEPT, "Paused"),
    (None, "Cancelling", ACCEPT, "Cancelling"),
    # Scheduled and due: claimed, started or ended.
    ("Scheduled", "Scheduled", ACCEPT, "Scheduled"),
    ("Scheduled", "Pending", ACCEPT, "Pending"),
    ("Scheduled", "Running", ACCEPT, "Running"),
    ("Scheduled", "Completed", ACCEPT, "Completed"),
    ("Scheduled", "Failed", ACCEPT, "Failed"),
    ("Scheduled", "Cancelled", ACCEPT, "Cancelled"),
    ("Scheduled", "Crashed", ACCEPT, "Crashed"),
    ("Scheduled", "Paused", ACCEPT, "Paused"),
    ("Scheduled", "Cancelling", ACCEPT, "Cancelling"),
    # Pending: a second claim is aborted.
    ("Pending", "Scheduled", ACCEPT, "Scheduled"),
    ("Pending", "Pending", ABORT, "Pending"),
    ("Pending", "Running", ACCEPT, "Running"),
    ("Pending", "Completed", ACCEPT, "Completed"),
    ("Pending", "Failed", ACCEPT, "Failed"),
    ("Pending", "Cancelled", ACCEPT, "Cancelled"),
    ("Pending", "Crashed", ACCEPT, "Crashed"),
    ("Pending", "Paused", ACCEPT, "Paused"),
    ("Pending", "Cancelling", ACCEPT, "Cancelling"),
    # Running: a failure with a retry left becomes AwaitingRetry.
    ("Running", "Scheduled", ACCEPT, "Scheduled"),
    ("Running", "Pending", ABORT, "Running"),
    ("Running", "Running", ACCEPT, "Rerunning"),
    ("Running", "Completed", ACCEPT, "Completed"),
    ("Running", "Failed", REJECT, "AwaitingRetry"),
    ("Running", "Cancelled", ACCEPT, "Cancelled"),
    ("Running", "Crashed", ACCEPT, "Crashed"),
    ("Running", "Paused", ACCEPT, "Paused"),
    ("Running", "Cancelling", ACCEPT, "Cancelling"),
    # Completed with a persisted result: never left.
    ("Completed", "Scheduled", REJECT, "Completed"),
    ("Completed", "Pending", REJECT, "Completed"),
    ("Completed", "Running", REJECT, "Completed"),
    ("Completed", "Completed", REJECT, "Completed"),
    ("Completed", "Failed", REJECT, "Completed"),
    ("Completed", "Cancelled", REJECT, "Completed"),
    ("Completed", "Crashed", ABORT, "Completed"),
    ("Completed", "Paused", ABORT, "Completed"),
    ("Completed", "Cancelling", ABORT, "Completed"),
    # Failed: a manual rerun starts the attempts again.
    ("Failed", "Scheduled", ACCEPT, "Scheduled"),
    ("Failed", "Pending", ACCEPT, "Pending"),
    ("Failed", "Running", ACCEPT, "Running"),
    ("Failed", "Completed", ACCEPT, "Completed"),
    ("Failed", "Failed", ACCEPT, "Failed"),
    ("Failed", "Cancelled", ACCEPT, "Cancelled"),
    ("Failed", "Crashed", ABORT, "Failed"),
    ("Failed", "Paused", ABORT, "Failed"),
    ("Failed", "Cancelling", ABORT, "Failed"),
    # Cancelled: no claim; no live-only state.
    ("Cancelled", "Scheduled", ACCEPT, "Scheduled"),
    ("Cancelled", "Pending", ABORT, "Cancelled"),
    ("Cancelled", "Running", ACCEPT, "Running"),
    ("Cancelled", "Completed", ACCEPT, "Completed"),
    ("Cancelled", "Failed", ACCEPT, "Failed"),
    ("Cancelled", "Cancelled", ACCEPT, "Cancelled"),
    ("Cancelled", "Crashed", ABORT, "Cancelled"),
    ("Cancelled", "Paused", ABORT, "Cancelled"),
    ("Cancelled", "Cancelling", ABORT, "Cancelled"),
    # Crashed: like Failed.
    ("Crashed", "Scheduled", ACCEPT, "Scheduled"),
    ("Crashed", "Pending", ACCEPT, "Pending"),
    ("Crashed", "Running", ACCEPT, "Running"),
    ("Crashed", "Completed", ACCEPT, "Completed"),
    ("Crashed", "Failed", ACCEPT, "Failed"),
    ("Crashed", "Cancelled", ACCEPT, "Cancelled"),
    ("Crashed", "Crashed", ABORT, "Crashed"),
    ("Crashed", "Paused", ABORT, "Crashed"),
    ("Crashed", "Cancelling", ABORT, "Crashed"),
    # Paused: no rule guards it for task runs.
    ("Paused", "Scheduled", ACCEPT, "Scheduled"),
    ("Paused", "Pending", ACCEPT, "Pending"),
    ("Paused", "Running", ACCEPT, "Running"),
    ("Paused", "Completed", ACCEPT, "Completed"),
    ("Paused", "Failed", ACCEPT, "Failed"),
    ("Paused", "Cancelled", ACCEPT, "Cancelled"),
    ("Paused", "Crashed", ACCEPT, "Crashed"),
    ("Paused", "Paused", ACCEPT, "Paused"),
    ("Paused", "Cancelling", ACCEPT, "Cancelling"),
    # Cancelling: no claim while the cancellation runs.
    ("Cancelling", "Scheduled", ACCEPT, "Scheduled"),
    ("Cancelling", "Pending", ABORT, "Cancelling"),
    ("Cancelling", "Running", ACCEPT, "Rerunning"),
    ("Cancelling", "Completed", ACCEPT, "Completed"),
    ("Cancelling", "Failed", ACCEPT, "Failed"),
    ("Cancelling", "Cancelled", ACCEPT, "Cancelled"),
    ("Cancelling", "Crashed", ACCEPT, "Crashed"),
    ("Cancelling", "Paused", ACCEPT, "Paused"),
    ("Cancelling", "Cancelling", ACCEPT, "Cancelling"),
]


def proposal_for(current: State | None, proposed_name: str, token) -> State:
    proposed = MAKERS[proposed_name]()
    if current is not None and current.is_scheduled() and proposed.is_pending():
        proposed.state_details.claimed_state_id = current.id
    else:
        proposed.state_details.claim_token = token
    return proposed


def test_table_covers_every_pair():
    pairs = {(current, proposed) for current, proposed, _, _ in TRANSITIONS}
    names = [None, *MAKERS]

    assert len(TRANSITIONS) == len(pairs)
    assert pairs == {(current, proposed) for current in names for proposed in MAKERS}


@pytest.mark.parametrize(("current_name", "proposed_name", "status", "resulting"), TRANSITIONS)
async def test_background_transition(current_name, proposed_name, status, resulting):
    bench = Bench()
    run = background_run(empirical_policy=TaskRunPolicy(retries=1))
    current = None
    actor = "client"
    if current_name is not None:
        current = bench.place(run, MAKERS[current_name]())
        run.run_count = 1 if current_name in HAS_RUN else 0
        run.claim_token = None if current_name == "Scheduled" else uuid4()
        actor = "worker"
    proposed = proposal_for(current, proposed_name, run.claim_token)

    result = await bench.propose(run, proposed, TaskgateBackgroundTaskPolicy, actor=actor)

    assert result.status is status, result.reason
    assert result.state.name == resulting

    written = bench.written(run)
    if status is ACCEPT or (status is REJECT and result.state.id != current.id):
        assert written[-1].id == result.state.id
        assert run.state_name == resulting
    else:
        assert written == [current]

    intents = bench.last_context.enqueue_intents
    if result.state.type is StateType.SCHEDULED and status is not ABORT:
        assert [intent.state_id for intent in intents] == [result.state.id]
    else:
        assert intents == []
