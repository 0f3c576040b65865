"""A storage fault mid-batch rolls back the whole batch; the resent batch applies once."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from queue_server.db.engine import Database
from queue_server.errors import StorageFault
from queue_server.protocol import Request
from queue_server.service import TransitionService
from tests.service.requests import claim_request, create_request, only_reply


async def two_scheduled_runs(service: TransitionService) -> list[tuple[UUID, str]]:
    """Create two runs; return (run id, Scheduled state id) pairs in lock order."""
    runs = []
    for _ in range(2):
        run_id = uuid4()
        reply = only_reply(await service.apply_batch([create_request(run_id)]))
        runs.append((run_id, reply.result["orchestration"]["state"]["id"]))
    return sorted(runs, key=lambda pair: str(pair[0]))


async def assert_resend_applies_once(
    service: TransitionService, batch: list[Request], run_ids: list[UUID]
) -> None:
    for run_id in run_ids:
        assert [state.type.value for state in await service.read_states(run_id)] == ["SCHEDULED"]
        assert len(await service.read_decisions(run_id)) == 1

    resent = await service.apply_batch(batch)
    again = await service.apply_batch(batch)

    for (_, first), (_, second) in zip(resent.replies, again.replies, strict=True):
        assert first.ok, first.error
        assert first.result["claim"]["status"] == "ACCEPT"
        assert first.result["start"]["status"] == "ACCEPT"
        assert second.result == first.result
    for run_id in run_ids:
        states = await service.read_states(run_id)
        assert [state.type.value for state in states] == ["SCHEDULED", "PENDING", "RUNNING"]


def admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def wait_for_lock_waiter(admin: asyncpg.Connection, database: str, other_than: int) -> int:
    """Return the pid of the backend waiting for a row lock in `database`."""
    for _ in range(1200):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' "
            "AND pid <> $2",
            database,
            other_than,
        )
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never waited for the row lock held by the test")


async def test_terminated_connection_mid_batch(service: TransitionService, database_url: str):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("pg_terminate_backend exists on PostgreSQL only")
    (first_id, first_state), (second_id, second_state) = await two_scheduled_runs(service)
    batch = [claim_request(first_id, first_state), claim_request(second_id, second_state)]

    blocker = await asyncpg.connect(admin_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT id FROM task_runs WHERE id = $1 FOR UPDATE", second_id)
        applying = asyncio.create_task(service.apply_batch(batch))
        pid = await wait_for_lock_waiter(
            blocker, make_url(database_url).database, blocker.get_server_pid()
        )
        assert await blocker.fetchval("SELECT pg_terminate_backend($1)", pid)
        await transaction.rollback()

        with pytest.raises(StorageFault):
            await applying
    finally:
        await blocker.close()

    await assert_resend_applies_once(service, batch, [first_id, second_id])


async def test_driver_error_mid_batch(service: TransitionService, database: Database):
    (first_id, first_state), (second_id, second_state) = await two_scheduled_runs(service)
    batch = [claim_request(first_id, first_state), claim_request(second_id, second_state)]
    state_inserts = 0

    def fail_state_insert(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The driver's own OperationalError, as a failing disk or a dropped connection
        # raises it, thrown at the batch's insert of the new states, after its runs
        # were locked and orchestrated.
        nonlocal state_inserts
        if statement.lstrip().upper().startswith("INSERT INTO TASK_RUN_STATES"):
            state_inserts += 1
            raise connection.dialect.dbapi.OperationalError("injected: the disk failed")

    engine = database.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", fail_state_insert)
    try:
        with pytest.raises(StorageFault):
            await service.apply_batch(batch)
    finally:
        event.remove(engine, "before_cursor_execute", fail_state_insert)

    assert state_inserts == 1
    await assert_resend_applies_once(service, batch, [first_id, second_id])
