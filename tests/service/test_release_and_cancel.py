"""Releasing a stopped worker's runs, cancelling runs, and tag concurrency limits."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pendulum
import pytest

from queue_server.errors import RequestError
from queue_server.protocol import StateCreate
from queue_server.service import TransitionService
from tests.service.requests import (
    claim_request,
    create_request,
    only_reply,
    propose_request,
    request,
)


async def scheduled_run(service: TransitionService, **run_fields: Any) -> tuple[UUID, str]:
    run_id = uuid4()
    reply = only_reply(await service.apply_batch([create_request(run_id, **run_fields)]))
    assert reply.ok, reply.error
    return run_id, reply.result["orchestration"]["state"]["id"]


async def running_run(
    service: TransitionService, worker_id: str = "worker-1", **run_fields: Any
) -> tuple[UUID, str]:
    """Create, claim and start a run; return its id and claim token."""
    run_id, state_id = await scheduled_run(service, **run_fields)
    reply = only_reply(
        await service.apply_batch([claim_request(run_id, state_id, worker_id=worker_id)])
    )
    assert reply.result["start"]["status"] == "ACCEPT", reply.result
    return run_id, reply.result["claim"]["state"]["state_details"]["claim_token"]


async def pending_run(service: TransitionService, worker_id: str = "worker-1") -> UUID:
    run_id, state_id = await scheduled_run(service)
    claim = {"type": "PENDING", "state_details": {"claimed_state_id": state_id}}
    reply = only_reply(
        await service.apply_batch([propose_request(run_id, claim, worker_id=worker_id)])
    )
    assert reply.result["status"] == "ACCEPT", reply.result
    return run_id


async def test_release_moves_each_held_run(service: TransitionService) -> None:
    pending = await pending_run(service)
    retrying, _ = await running_run(
        service, empirical_policy={"retries": 1, "retry_delay": [60]}
    )
    crashing, _ = await running_run(service)
    cancelling, _ = await running_run(service)
    await service.cancel_run(cancelling)
    other_worker, _ = await running_run(service, worker_id="worker-2")

    held = await service.workers_holding_runs()
    assert sorted(held["worker-1"]) == sorted([pending, retrying, crashing, cancelling])
    assert held["worker-2"] == [other_worker]

    before = pendulum.now("UTC")
    answers, effects = await service.release_worker("worker-1")

    assert sorted(answer.run_id for answer in answers) == sorted(
        [pending, retrying, crashing, cancelling]
    )
    runs = {run_id: await service.read_run(run_id) for run_id in (pending, retrying, crashing,
                                                                  cancelling, other_worker)}
    assert runs[pending].state.name == "Scheduled"
    assert runs[pending].run_count == 0
    assert runs[retrying].state.name == "AwaitingRetry"
    assert runs[retrying].state.state_details.scheduled_time >= before.add(seconds=59)
    assert runs[retrying].run_count == 1
    assert runs[crashing].state.type.value == "CRASHED"
    assert runs[cancelling].state.type.value == "CANCELLED"
    assert runs[other_worker].state.type.value == "RUNNING"
    assert sorted(job.run_id for job in effects.jobs) == sorted([pending, retrying])
    assert await service.workers_holding_runs() == {"worker-2": [other_worker]}


async def test_release_clears_token_and_slot(service: TransitionService) -> None:
    await service.create_limit("db", 1)
    run_id, token = await running_run(service, tags=["db"])
    assert (await service.read_limit("db")).holders == {run_id}

    await service.release_worker("worker-1", [run_id])

    assert (await service.read_limit("db")).holders == set()
    completed = {"type": "COMPLETED", "state_details": {"claim_token": token}}
    late = only_reply(await service.apply_batch([propose_request(run_id, completed)]))
    assert late.result["status"] == "ABORT"


async def test_release_over_transport(service: TransitionService) -> None:
    run_id = await pending_run(service)
    args = {"worker_id": "worker-1", "run_ids": [str(run_id), str(uuid4())]}

    reply = only_reply(await service.apply_batch([request("release_worker", args)]))

    assert reply.ok, reply.error
    assert reply.result == {"released": [str(run_id)]}


async def test_cancel_scheduled_run_is_final(service: TransitionService) -> None:
    run_id, _ = await scheduled_run(service)

    answer, effects = await service.cancel_run(run_id)

    assert answer.status == "ACCEPT"
    assert answer.state.type.value == "CANCELLED"
    assert [event.state_type.value for event in effects.events] == ["CANCELLED"]
    assert [result.id for result in effects.results] == [run_id]
    again, _ = await service.cancel_run(run_id)
    assert again.status == "ABORT"


async def test_forced_state_by_operator(service: TransitionService) -> None:
    run_id, token = await running_run(service)

    answer, effects = await service.propose_state(
        run_id, StateCreate(type="COMPLETED", message="done by hand"), force=True
    )

    assert answer.status == "ACCEPT"
    assert (await service.read_run(run_id)).state.message == "done by hand"
    assert effects.results[0].id == run_id
    decisions = await service.read_decisions(run_id)
    assert decisions[-1].actor == "operator"


async def test_limits_create_read_reset_delete(service: TransitionService) -> None:
    created = await service.create_limit("db", 2)
    changed = await service.create_limit("db", 3)
    await service.create_limit("api", 1)

    assert created.limit == 2
    assert changed.limit == 3
    assert [limit.tag for limit in await service.list_limits()] == ["api", "db"]
    run_id, _ = await running_run(service, tags=["db"])
    assert (await service.read_limit("db")).holders == {run_id}
    assert (await service.reset_limit("db")).holders == set()
    await service.delete_limit("db")
    with pytest.raises(RequestError) as missing:
        await service.read_limit("db")
    assert missing.value.code == "not_found"


async def test_full_tag_limit_waits(service: TransitionService) -> None:
    await service.create_limit("db", 1)
    await running_run(service, tags=["db"])
    run_id, state_id = await scheduled_run(service, tags=["db"])

    reply = only_reply(await service.apply_batch([claim_request(run_id, state_id)]))

    assert reply.result["start"]["status"] == "WAIT"
    assert reply.result["start"]["rule"] == "SecureTaskConcurrencySlots"
    decisions = await service.read_decisions(run_id)
    assert decisions[-1].status == "WAIT"
    assert decisions[-1].delay_seconds > 0
