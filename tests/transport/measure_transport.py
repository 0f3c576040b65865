"""Measure create requests per second through the Redis transport and one in-process replica.

Run: ``/work/venv/bin/python -m tests.transport.measure_transport [--postgres URL]``.
It starts a private redis-server, queues N create_task_run requests on the stream, then
starts the consumer and times until the last reply arrives, for batch sizes 1 and 100,
on SQLite and (with ``--postgres``) on a fresh PostgreSQL database. The figures include
the SQL transaction, the replies, the enqueue and the events of every request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from tests.servers import RedisServer
from tests.transport.stack import running_stack, stack_settings
from tests.transport.wire import create_task_run_args, request_body

RUNS = ((1, 300), (100, 3000))  # (batch size, requests)
REPLY_WAIT_SECONDS = 120


async def measure(redis_url: str, database_url: str, batch_size: int, count: int) -> float:
    """Return requests per second for `count` creates applied `batch_size` at a time."""
    settings = stack_settings(
        redis_url,
        database_url,
        f"measure{uuid.uuid4().hex[:6]}",
        batch_size=batch_size,
        max_queued_per_task_key=1_000_000,
    )
    async with running_stack(settings, start=False) as stack:
        async with stack.redis.pipeline(transaction=False) as pipe:
            for _ in range(count):
                body = request_body("create_task_run", create_task_run_args(), "measure")
                pipe.xadd(stack.keys.requests, {"body": json.dumps(body)})
            await pipe.execute()

        started = time.perf_counter()
        stack.start_consumer()
        for _ in range(count):
            item = await stack.redis.blpop([stack.keys.reply("measure")], REPLY_WAIT_SECONDS)
            if item is None:
                raise RuntimeError("a reply did not arrive in time")
        return count / (time.perf_counter() - started)


async def fresh_postgres(server_url: str) -> tuple[str, str]:
    base = make_url(server_url)
    name = f"taskgate_measure_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(False))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, base.set(database=name).render_as_string(hide_password=False)


async def drop_postgres(server_url: str, name: str) -> None:
    base = make_url(server_url)
    admin = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(False))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def main(postgres_url: str | None) -> None:
    server = RedisServer().start()
    folder = Path(tempfile.mkdtemp(prefix="taskgate-measure-"))
    try:
        for batch_size, count in RUNS:
            sqlite_url = f"sqlite+aiosqlite:///{folder / uuid.uuid4().hex}.db"
            rate = await measure(server.url, sqlite_url, batch_size, count)
            print(f"sqlite   batch {batch_size:3d}: {count:5d} creates, {rate:7.0f} requests/s")
            if postgres_url:
                name, url = await fresh_postgres(postgres_url)
                try:
                    rate = await measure(server.url, url, batch_size, count)
                finally:
                    await drop_postgres(postgres_url, name)
                print(f"postgres batch {batch_size:3d}: {count:5d} creates, {rate:7.0f} requests/s")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", help="postgresql+asyncpg:// URL of a server to measure on")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(options.postgres))
