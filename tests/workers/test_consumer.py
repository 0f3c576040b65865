"""The task key consumer skips jobs already running, here or in another worker, in one read."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from arq.connections import RedisSettings, create_pool

from queue_server.keys import ARQ_IN_PROGRESS_PREFIX, Keys
from workers.consumer import TaskKeyConsumer
from workers.watcher import RedisClock

pytestmark = pytest.mark.integration


async def noop_handler(ctx: dict, **kwargs: object) -> None:
    return None


def job_id() -> bytes:
    return f"{uuid4()}:{uuid4()}".encode()


async def test_running_jobs_are_skipped_before_arq_checks(redis_url: str, key_prefix: str):
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    consumer = TaskKeyConsumer(
        task_key="tests.noop",
        handler=noop_handler,
        keys=Keys(key_prefix),
        pool=pool,
        slots=asyncio.BoundedSemaphore(2),
        concurrency=2,
        clock=RedisClock(),
        on_slot_freed=lambda: None,
    )
    local_job, remote_job, waiting_job = job_id(), job_id(), job_id()
    running_here = asyncio.get_running_loop().create_future()
    consumer.tasks[local_job.decode()] = running_here
    marker = ARQ_IN_PROGRESS_PREFIX + remote_job.decode()
    try:
        await pool.set(marker, b"1", px=60_000)

        assert await consumer._not_started([local_job, remote_job, waiting_job]) == [waiting_job]
        assert await consumer._not_started([local_job]) == []
    finally:
        running_here.cancel()
        await pool.delete(marker)
        await pool.aclose()
