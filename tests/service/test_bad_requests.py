"""Bad requests get an error reply naming the value, and nothing is written for them."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from queue_server.db.engine import Database
from queue_server.db.models import DecisionRow, TaskRunRow, TaskRunStateRow
from queue_server.service import TransitionService
from queue_server.settings import Settings
from tests.service.requests import (
    claim_request,
    create_request,
    only_reply,
    propose_request,
    request,
)


async def count_rows(database: Database) -> tuple[int, int, int]:
    async with database.read_session() as session:
        runs = await session.scalar(select(func.count()).select_from(TaskRunRow))
        states = await session.scalar(select(func.count()).select_from(TaskRunStateRow))
        decisions = await session.scalar(select(func.count()).select_from(DecisionRow))
    return runs, states, decisions


async def created_run(service: TransitionService) -> Any:
    run_id = uuid4()
    reply = only_reply(await service.apply_batch([create_request(run_id)]))
    assert reply.ok, reply.error
    return run_id


@pytest.mark.parametrize(
    ("state", "field", "named"),
    [
        ({"type": "EXPLODED"}, "args.state.type", "EXPLODED"),
        ({"type": "RUNNING", "color": "red"}, "args.state.color", "red"),
        ({"type": "RUNNING", "state_details": {"claim_token": "not-a-uuid"}},
         "args.state.state_details.claim_token", "not-a-uuid"),
    ],
)
async def test_invalid_state_names_the_value(
    service: TransitionService, database: Database, state: dict, field: str, named: str
) -> None:
    run_id = await created_run(service)
    before = await count_rows(database)

    reply = only_reply(await service.apply_batch([propose_request(run_id, state)]))

    assert not reply.ok
    assert reply.error.code == "invalid_request"
    assert reply.error.field == field
    assert named in reply.error.message
    assert await count_rows(database) == before


async def test_unknown_run_id_is_not_found(
    service: TransitionService, database: Database
) -> None:
    missing = uuid4()

    replies = [
        only_reply(await service.apply_batch([propose_request(missing, {"type": "RUNNING"})])),
        only_reply(await service.apply_batch([request("read_run", {"run_id": str(missing)})])),
        only_reply(await service.apply_batch([request("cancel_run", {"run_id": str(missing)})])),
    ]

    for reply in replies:
        assert not reply.ok
        assert reply.error.code == "not_found"
        assert reply.error.field == "args.run_id"
        assert str(missing) in reply.error.message
    assert await count_rows(database) == (0, 0, 0)


async def test_malformed_args_name_the_field(
    service: TransitionService, database: Database
) -> None:
    cases = [
        (request("propose_state", {"run_id": "12", "state": {"type": "RUNNING"},
                                   "transition_id": str(uuid4())}), "args.run_id", "'12'"),
        (request("create_task_run", {"run": {"id": str(uuid4())}, "transition_id": str(uuid4())}),
         "args.run.task_key", "task_key"),
        (request("read_runs", {"run_ids": "everything"}), "args.run_ids", "everything"),
    ]
    for sent, field, named in cases:
        reply = only_reply(await service.apply_batch([sent]))
        assert not reply.ok
        assert reply.error.code == "invalid_request"
        assert reply.error.field == field
        assert named in reply.error.message
    assert await count_rows(database) == (0, 0, 0)


async def test_force_over_transport_is_forbidden(service: TransitionService) -> None:
    run_id = await created_run(service)
    sent = propose_request(run_id, {"type": "COMPLETED"})
    sent.args["force"] = True

    reply = only_reply(await service.apply_batch([sent]))

    assert reply.error.code == "forbidden"
    assert reply.error.field == "args.force"
    assert [state.type.value for state in await service.read_states(run_id)] == ["SCHEDULED"]


async def test_oversized_parameters_are_refused(
    database: Database, settings: Settings
) -> None:
    settings.max_argument_bytes = 1000
    service = TransitionService(database, settings)
    big = {"serializer": "json", "value": {"blob": "x" * 2000}}

    reply = only_reply(await service.apply_batch([create_request(parameters=big)]))

    assert reply.error.code == "invalid_request"
    assert reply.error.field == "args.run.parameters"
    assert "TASKGATE_MAX_ARGUMENT_BYTES" in reply.error.message
    assert "1000" in reply.error.message
    assert await count_rows(database) == (0, 0, 0)


async def test_long_cache_key_is_refused(service: TransitionService, database: Database) -> None:
    reply = only_reply(await service.apply_batch([create_request(cache_key="k" * 2001)]))

    assert reply.error.code == "invalid_request"
    assert reply.error.field == "args.run.cache_key"
    assert "2001" in reply.error.message
    assert await count_rows(database) == (0, 0, 0)


async def test_full_queue_refuses_create(database: Database, settings: Settings) -> None:
    settings.max_queued_per_task_key = 2
    service = TransitionService(database, settings)
    for _ in range(2):
        assert only_reply(await service.apply_batch([create_request()])).ok

    reply = only_reply(await service.apply_batch([create_request()]))
    other_key = only_reply(await service.apply_batch([create_request(task_key="tests.other")]))

    assert reply.error.code == "queue_full"
    assert "tests.add" in reply.error.message
    assert other_key.ok
    assert await service.queue_counts() == {"tests.add": 2, "tests.other": 1}


async def test_full_queue_counts_creates_of_one_batch(
    database: Database, settings: Settings
) -> None:
    settings.max_queued_per_task_key = 2
    service = TransitionService(database, settings)
    outcome = await service.apply_batch([create_request() for _ in range(3)])
    replies = [reply for _, reply in outcome.replies]

    assert sorted(reply.ok for reply in replies) == [False, True, True]
    assert [reply.error.code for reply in replies if not reply.ok] == ["queue_full"]
    assert await service.queue_counts() == {"tests.add": 2}


async def test_claim_and_release_move_the_count(
    database: Database, settings: Settings
) -> None:
    settings.max_queued_per_task_key = 2
    service = TransitionService(database, settings)
    run_id = uuid4()
    retried_once = {"retries": 1, "retry_delay": 0}
    created = only_reply(
        await service.apply_batch([create_request(run_id, empirical_policy=retried_once)])
    )
    state_id = created.result["orchestration"]["state"]["id"]
    assert only_reply(await service.apply_batch([create_request()])).ok
    assert only_reply(await service.apply_batch([create_request()])).error.code == "queue_full"

    # The claim moves the run out of Scheduled: the kept count follows at once.
    assert only_reply(await service.apply_batch([claim_request(run_id, state_id)])).ok
    assert only_reply(await service.apply_batch([create_request()])).ok
    assert only_reply(await service.apply_batch([create_request()])).error.code == "queue_full"

    # Releasing the claim's worker puts its run back in Scheduled (AwaitingRetry), so
    # the queue contains three. A kept count of two would reject the create too, so
    # the service's kept count is checked: it must be dropped, to be read again.
    await service.release_worker("worker-1")
    assert await service.queue_counts() == {"tests.add": 3}
    assert service.queued_counts.get("tests.add") is None


async def test_bad_request_leaves_batch_neighbours(service: TransitionService) -> None:
    good_id = uuid4()

    outcome = await service.apply_batch(
        [create_request(good_id), propose_request(uuid4(), {"type": "RUNNING"})]
    )

    good, bad = (reply for _, reply in outcome.replies)
    assert good.ok
    assert bad.error.code == "not_found"
    assert [job.run_id for job in outcome.effects.jobs] == [good_id]


async def test_claim_without_worker_id_is_invalid(service: TransitionService) -> None:
    run_id = await created_run(service)
    state_id = (await service.read_run(run_id)).state.id
    claim = {"type": "PENDING", "state_details": {"claimed_state_id": str(state_id)}}

    reply = only_reply(await service.apply_batch([propose_request(run_id, claim, worker_id=None)]))

    assert reply.error.code == "invalid_request"
    assert reply.error.field == "args.worker_id"
    assert [state.type.value for state in await service.read_states(run_id)] == ["SCHEDULED"]
