"""A storage fault mid-batch: no reply, entries stay pending, resends succeed once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from queue_server.db.engine import Database
from tests.transport.stack import acked, running_stack, stack_settings
from tests.transport.wire import create_task_run_args, replies, request_body, send

pytestmark = pytest.mark.integration

LOCK_WAIT_MS = 300


@contextlib.asynccontextmanager
async def write_lock_held(database_url: str):
    """Hold a lock that makes the service's writes fail after a short wait."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("LOCK TABLE task_runs IN SHARE ROW EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await connection.close()


async def limit_lock_waits(database_url: str) -> Database:
    """Return a Database whose write waits give up after LOCK_WAIT_MS."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return Database(database_url, sqlite_busy_timeout_ms=LOCK_WAIT_MS)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    await connection.execute(
        f"ALTER DATABASE \"{url.database}\" SET lock_timeout = '{LOCK_WAIT_MS}ms'"
    )
    await connection.close()
    return Database(database_url)


async def wait_for_log(caplog, text: str) -> None:
    for _ in range(1200):
        if any(text in record.getMessage() for record in caplog.records):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line containing {text!r}")


async def test_storage_fault_sends_nothing_then_resend_succeeds(
    clean_redis, database_url, key_prefix, caplog
):
    caplog.set_level(logging.INFO, logger="queue_server")
    settings = stack_settings(clean_redis, database_url, key_prefix, claim_idle=1.0)
    bodies = [
        request_body("create_task_run", create_task_run_args(id=uuid4()), "client-f")
        for _ in range(3)
    ]
    async with running_stack(settings, start=False) as stack:
        await stack.database.dispose()
        stack.database = await limit_lock_waits(database_url)
        stack.service.database = stack.database

        async with write_lock_held(database_url):
            for body in bodies:
                await send(stack.redis, stack.keys, body)
            stack.start_consumer()
            await wait_for_log(caplog, "storage fault")
            unanswered = await stack.redis.llen(stack.keys.reply("client-f"))
            pending = await stack.redis.xpending(stack.keys.requests, "taskgate-service")

        for body in bodies:
            await send(stack.redis, stack.keys, body)
        # Three replies to the resends, three to the pending originals taken over later.
        answers = await replies(stack.redis, stack.keys, "client-f", 6)
        await acked(stack)  # replies go out before the enqueue, the XACK after it
        histories = [
            await stack.service.read_states(UUID(body["args"]["run"]["id"])) for body in bodies
        ]
        queued = await stack.redis.zcard(stack.keys.queue("tests.add"))

    assert unanswered == 0
    assert pending["pending"] == 3
    assert all(answer.ok for answer in answers)
    for body in bodies:
        same = [a for a in answers if str(a.request_id) == body["request_id"]]
        assert len(same) == 2
        assert same[0].result == same[1].result
    assert [len(history) for history in histories] == [1, 1, 1]
    assert queued == 3
