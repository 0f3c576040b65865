"""A background run goes through every state of its life, all of it kept in SQL."""

from __future__ import annotations

from uuid import uuid4

from queue_server.service import TransitionService
from tests.service.requests import claim_request, create_request, only_reply, propose_request


async def test_run_history_and_decisions(service: TransitionService) -> None:
    run_id = uuid4()

    created = only_reply(await service.apply_batch([create_request(run_id)]))
    assert created.ok, created.error
    scheduled = created.result["orchestration"]["state"]
    assert created.result["orchestration"]["status"] == "ACCEPT"
    assert scheduled["type"] == "SCHEDULED"
    assert scheduled["state_details"]["deferred"] is True

    outcome = await service.apply_batch([claim_request(run_id, scheduled["id"])])
    started = only_reply(outcome)
    assert started.ok, started.error
    assert started.result["claim"]["status"] == "ACCEPT"
    assert started.result["start"]["status"] == "ACCEPT"
    token = started.result["claim"]["state"]["state_details"]["claim_token"]
    assert token is not None

    result = {"type": "result", "serializer": "json", "value": 3}
    completed = only_reply(
        await service.apply_batch(
            [
                propose_request(
                    run_id,
                    {"type": "COMPLETED", "data": result, "state_details": {"claim_token": token}},
                )
            ]
        )
    )
    assert completed.ok, completed.error
    assert completed.result["status"] == "ACCEPT"

    states = await service.read_states(run_id)
    assert [state.type.value for state in states] == [
        "SCHEDULED", "PENDING", "RUNNING", "COMPLETED",
    ]
    assert states[-1].data == result

    decisions = await service.read_decisions(run_id)
    assert [decision.status for decision in decisions] == ["ACCEPT"] * 4
    assert [decision.proposed_type.value for decision in decisions] == [
        "SCHEDULED", "PENDING", "RUNNING", "COMPLETED",
    ]

    run = await service.read_run(run_id)
    assert run.state.type.value == "COMPLETED"
    assert run.state.data == result
    assert run.run_count == 1
    assert run.worker_id == "worker-1"
    assert run.start_time is not None and run.end_time is not None


async def test_retried_run_history(service: TransitionService) -> None:
    run_id = uuid4()
    created = only_reply(
        await service.apply_batch(
            [create_request(run_id, empirical_policy={"retries": 1, "retry_delay": 0})]
        )
    )
    first = only_reply(
        await service.apply_batch(
            [claim_request(run_id, created.result["orchestration"]["state"]["id"])]
        )
    )
    token = first.result["claim"]["state"]["state_details"]["claim_token"]
    failure = {"type": "FAILED", "message": "boom", "state_details": {"claim_token": token}}
    retry = only_reply(await service.apply_batch([propose_request(run_id, failure)]))
    assert retry.result["status"] == "REJECT"
    assert retry.result["rule"] == "RetryFailedTasks"

    second = only_reply(
        await service.apply_batch(
            [claim_request(run_id, retry.result["state"]["id"], worker_id="worker-2")]
        )
    )
    assert second.result["start"]["status"] == "ACCEPT"
    assert second.result["start"]["state"]["name"] == "Retrying"
    token = second.result["claim"]["state"]["state_details"]["claim_token"]
    failure["state_details"] = {"claim_token": token}
    final = only_reply(await service.apply_batch([propose_request(run_id, failure)]))

    assert final.result["status"] == "ACCEPT"
    states = await service.read_states(run_id)
    assert [state.name for state in states] == [
        "Scheduled", "Pending", "Running", "AwaitingRetry", "Pending", "Retrying", "Failed",
    ]
    decisions = await service.read_decisions(run_id)
    assert [decision.status for decision in decisions] == [
        "ACCEPT", "ACCEPT", "ACCEPT", "REJECT", "ACCEPT", "ACCEPT", "ACCEPT",
    ]
    run = await service.read_run(run_id)
    assert run.run_count == 2
    assert run.worker_id == "worker-2"
    assert run.state.message == "boom"
