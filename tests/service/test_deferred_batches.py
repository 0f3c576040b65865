"""The deferred write path: plain runs written in one flush, others on the direct path."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event

from policy.states import Scheduled
from queue_server.db.engine import Database
from queue_server.db.journal import BatchMemory
from queue_server.db.run_records import RunRecord
from queue_server.db.states import task_run_state_values
from queue_server.service import TransitionService
from queue_server.settings import Settings
from tests.service.requests import claim_request, create_request, propose_request

LIFECYCLE = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]


def replies_of(outcome: Any) -> list[Any]:
    replies = [reply for _, reply in outcome.replies]
    for reply in replies:
        assert reply.ok, reply.error
    return replies


async def run_through_lifecycle(service: TransitionService, run_ids: list[UUID], **fields: Any):
    """Create, claim and complete `run_ids`, each step as one batch for all runs."""
    created = replies_of(
        await service.apply_batch([create_request(run_id, **fields) for run_id in run_ids])
    )
    claims = [
        claim_request(run_id, reply.result["orchestration"]["state"]["id"])
        for run_id, reply in zip(run_ids, created, strict=True)
    ]
    started = replies_of(await service.apply_batch(claims))
    completions = []
    for run_id, reply in zip(run_ids, started, strict=True):
        assert reply.result["start"]["status"] == "ACCEPT", reply.result
        token = reply.result["start"]["state"]["state_details"]["claim_token"]
        state = {"type": "COMPLETED", "data": 3, "state_details": {"claim_token": token}}
        completions.append(propose_request(run_id, state))
    finished = replies_of(await service.apply_batch(completions))
    assert [reply.result["status"] for reply in finished] == ["ACCEPT"] * len(run_ids)


async def assert_lifecycle_stored(service: TransitionService, run_id: UUID) -> None:
    states = await service.read_states(run_id)
    assert [state.type.value for state in states] == LIFECYCLE
    run = await service.read_run(run_id)
    assert run.state.type.value == "COMPLETED"
    assert run.state.id == states[-1].id
    assert run.run_count == 1
    decisions = await service.read_decisions(run_id)
    assert [decision.status for decision in decisions] == ["ACCEPT"] * 4


async def test_plain_and_tagged_runs_share_batches(service: TransitionService) -> None:
    plain = [uuid4(), uuid4()]
    tagged = [uuid4()]
    await run_through_lifecycle(service, plain)
    await run_through_lifecycle(service, tagged, tags=["nightly"])
    mixed = [uuid4(), uuid4()]
    # One batch holding a plain create and a tagged one, which takes the direct path.
    outcome = await service.apply_batch(
        [create_request(mixed[0]), create_request(mixed[1], tags=["nightly"])]
    )
    replies_of(outcome)
    assert sorted(job.run_id for job in outcome.effects.jobs) == sorted(mixed)

    for run_id in plain + tagged:
        await assert_lifecycle_stored(service, run_id)
    for run_id in mixed:
        assert [state.type.value for state in await service.read_states(run_id)] == ["SCHEDULED"]


async def test_run_created_twice_in_one_batch_exists_once(service: TransitionService) -> None:
    run_id, transition_id = uuid4(), uuid4()
    first, again = replies_of(
        await service.apply_batch(
            [
                create_request(run_id, transition_id=transition_id),
                create_request(run_id, transition_id=transition_id),
            ]
        )
    )
    assert first.result["orchestration"] == again.result["orchestration"]
    assert len(await service.read_states(run_id)) == 1
    assert len(await service.read_decisions(run_id)) == 1


async def test_concurrent_replica_creates_once(
    service: TransitionService, migrated_url: str, settings: Settings
) -> None:
    # On PostgreSQL the replicas that lose the race fail the flush's INSERT on the run
    # id, so they apply their batch again on the direct path. On SQLite they wait for
    # the write lock and find the first replica's decision by transition id.
    run_id, transition_id = uuid4(), uuid4()
    databases = [Database(migrated_url) for _ in range(5)]
    replicas = [TransitionService(database, settings) for database in databases]
    try:
        outcomes = await asyncio.gather(
            *(
                replica.apply_batch([create_request(run_id, transition_id=transition_id)])
                for replica in replicas
            )
        )
    finally:
        for database in databases:
            await database.dispose()

    replies = [reply for outcome in outcomes for reply in replies_of(outcome)]
    assert len({str(reply.result["orchestration"]) for reply in replies}) == 1
    assert len(await service.read_states(run_id)) == 1
    assert len(await service.read_decisions(run_id)) == 1


async def test_statement_error_on_deferred_path_applies_batch_again(
    service: TransitionService, database: Database
) -> None:
    failed = 0

    def fail_bulk_decisions(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        # An integrity error is not a storage fault: no request can be blamed for it on
        # the deferred path, so the whole batch runs again with a savepoint per request,
        # where decisions are inserted one by one.
        nonlocal failed
        if many and statement.lstrip().upper().startswith("INSERT INTO DECISIONS"):
            failed += 1
            raise connection.dialect.dbapi.IntegrityError("injected: bulk insert refused")

    run_ids = [uuid4(), uuid4(), uuid4()]
    engine = database.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", fail_bulk_decisions)
    try:
        await run_through_lifecycle(service, run_ids)
    finally:
        event.remove(engine, "before_cursor_execute", fail_bulk_decisions)

    assert failed == 3
    for run_id in run_ids:
        await assert_lifecycle_stored(service, run_id)


@pytest.mark.unit
def test_undo_puts_back_what_the_request_changed() -> None:
    memory = BatchMemory()
    existing = RunRecord({"id": uuid4(), "run_count": 0, "state_name": "Scheduled", "tags": []})
    memory.cache_run(existing, None)
    memory.begin_request()
    memory.change_row(existing, {"run_count": 1, "state_name": "Running"})
    memory.add_answer(uuid4(), {"status": "ACCEPT"})
    memory.pending.decisions.append({"run_id": existing.id})
    memory.pending.add_state(*task_run_state_values(existing.id, Scheduled(), existing.created))
    memory.cache_run(existing, Scheduled())
    new = RunRecord({"id": uuid4(), "run_count": 0, "tags": []})
    memory.add_new_run(new)
    memory.queued["tests.add"] = 7

    memory.undo()

    assert (existing.run_count, existing.state_name) == (0, "Scheduled")
    assert memory.runs == {existing.id: (existing, None)}
    assert not memory.pending
    assert memory.answers == {}
    assert memory.queued == {}
    assert new.id in memory.absent_runs
