"""Batches: a failing transition rolls back alone, and resends change nothing."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import delete

from queue_server.db.engine import Database
from queue_server.db.models import FlowRunRow
from queue_server.service import TransitionService
from tests.service.requests import (
    claim_request,
    create_request,
    only_reply,
    propose_request,
    request,
)


async def test_rule_error_rolls_back_its_transition_only(
    service: TransitionService, database: Database
) -> None:
    flow_run_id = uuid4()
    flow = only_reply(
        await service.apply_batch(
            [
                request(
                    "create_flow_run",
                    {
                        "run": {"id": str(flow_run_id), "flow_name": "nightly"},
                        "state": {"type": "RUNNING"},
                        "transition_id": str(uuid4()),
                    },
                )
            ]
        )
    )
    assert flow.ok, flow.error
    broken_id = uuid4()
    created = only_reply(
        await service.apply_batch([create_request(broken_id, flow_run_id=str(flow_run_id))])
    )
    scheduled_id = created.result["orchestration"]["state"]["id"]
    async with database.write_session() as session:
        await session.execute(delete(FlowRunRow).where(FlowRunRow.id == flow_run_id))
        await session.commit()

    healthy_id = uuid4()
    outcome = await service.apply_batch(
        [claim_request(broken_id, scheduled_id), create_request(healthy_id)]
    )

    broken, healthy = (reply for _, reply in outcome.replies)
    assert broken.ok, broken.error
    assert broken.result["claim"]["status"] == "ACCEPT"
    assert broken.result["start"]["status"] == "ABORT"
    assert broken.result["start"]["rule"] == "UpdateFlowRunTrackerOnTasks"
    assert str(flow_run_id) in broken.result["start"]["reason"]
    assert healthy.ok, healthy.error
    assert healthy.result["orchestration"]["status"] == "ACCEPT"

    broken_states = await service.read_states(broken_id)
    assert [state.type.value for state in broken_states] == ["SCHEDULED", "PENDING"]
    broken_run = await service.read_run(broken_id)
    assert broken_run.run_count == 0
    assert broken_run.start_time is None
    published = {(event.run_id, event.state_type.value) for event in outcome.effects.events}
    assert published == {(broken_id, "PENDING"), (healthy_id, "SCHEDULED")}
    assert [job.run_id for job in outcome.effects.jobs] == [healthy_id]
    assert [decision.status for decision in await service.read_decisions(broken_id)] == [
        "ACCEPT", "ACCEPT", "ABORT",
    ]


async def test_resent_create_returns_same_answer(service: TransitionService) -> None:
    run_id, transition_id = uuid4(), uuid4()
    first_request = create_request(run_id, transition_id=transition_id)
    first = only_reply(await service.apply_batch([first_request]))
    again = await service.apply_batch([create_request(run_id, transition_id=transition_id)])

    assert only_reply(again).result["orchestration"] == first.result["orchestration"]
    assert again.effects.jobs == []
    assert len(await service.read_states(run_id)) == 1
    assert len(await service.filter_runs(task_key="tests.add")) == 1


async def test_create_with_other_contents_conflicts(service: TransitionService) -> None:
    run_id = uuid4()
    await service.apply_batch([create_request(run_id)])

    reply = only_reply(await service.apply_batch([create_request(run_id, name="other")]))

    assert not reply.ok
    assert reply.error.code == "conflict"
    assert reply.error.field == "args.run.id"
    assert str(run_id) in reply.error.message
    assert len(await service.read_states(run_id)) == 1


async def test_resent_failed_after_retry_returns_same_answer(
    service: TransitionService,
) -> None:
    run_id = uuid4()
    created = only_reply(
        await service.apply_batch(
            [create_request(run_id, empirical_policy={"retries": 2, "retry_delay": 30})]
        )
    )
    started = only_reply(
        await service.apply_batch(
            [claim_request(run_id, created.result["orchestration"]["state"]["id"])]
        )
    )
    token = started.result["claim"]["state"]["state_details"]["claim_token"]
    failed_id = uuid4()
    failure = {
        "type": "FAILED",
        "message": "boom",
        "data": {"type": "error", "exc_type": "ValueError", "message": "boom"},
        "state_details": {"claim_token": token},
    }

    first = await service.apply_batch([propose_request(run_id, failure, transition_id=failed_id)])
    resent = await service.apply_batch(
        [propose_request(run_id, failure, transition_id=failed_id)]
    )

    first_answer = only_reply(first).result
    assert first_answer["status"] == "REJECT"
    assert first_answer["state"]["name"] == "AwaitingRetry"
    assert only_reply(resent).result == first_answer
    assert [str(job.state_id) for job in first.effects.jobs] == [first_answer["state"]["id"]]
    assert not resent.effects
    states = await service.read_states(run_id)
    assert [state.name for state in states] == ["Scheduled", "Pending", "Running", "AwaitingRetry"]


async def test_resent_proposal_in_same_batch_applies_once(service: TransitionService) -> None:
    run_id = uuid4()
    created = only_reply(await service.apply_batch([create_request(run_id)]))
    scheduled_id = created.result["orchestration"]["state"]["id"]
    claim = claim_request(run_id, scheduled_id)

    outcome = await service.apply_batch([claim, claim])

    first, second = (reply.result for _, reply in outcome.replies)
    assert first == second
    assert first["start"]["status"] == "ACCEPT"
    states = await service.read_states(run_id)
    assert [state.type.value for state in states] == ["SCHEDULED", "PENDING", "RUNNING"]
