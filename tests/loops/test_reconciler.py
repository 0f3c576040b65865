"""The reconciler restores every committed Scheduled background run missing from Redis, once."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import RedisError

from queue_server.keys import ARQ_IN_PROGRESS_PREFIX
from queue_server.loops.reconciler import Reconciler
from tests.loops.runs import claim, create_run
from tests.servers import RedisServer
from tests.transport.stack import running_stack, stack_settings

pytestmark = pytest.mark.integration


async def queued_job_ids(stack, task_key: str = "tests.add") -> set[str]:
    return {item.decode() for item in await stack.redis.zrange(stack.keys.queue(task_key), 0, -1)}


# 500 reads the five Scheduled runs in one page; 2 in three pages; 5 in a full page and
# an empty one.
@pytest.mark.parametrize("page_size", [500, 2, 5])
async def test_reconciler_restores_deleted_queue_once(
    clean_redis, database_url, key_prefix, page_size, monkeypatch
):
    monkeypatch.setattr("queue_server.loops.reconciler.PAGE_SIZE", page_size)
    settings = stack_settings(clean_redis, database_url, key_prefix)
    async with running_stack(settings, start=False) as stack:
        runs = [await create_run(stack) for _ in range(6)]
        running_run, running_state = runs[0]
        await claim(stack, running_run, running_state, "worker-1", start=True)
        expected = {f"{run_id}:{state_id}" for run_id, state_id in runs[1:]}
        before = await queued_job_ids(stack)

        # As a Redis restart without persistence would: the queue and job keys vanish.
        await stack.redis.flushdb()
        reconciler = Reconciler(stack.redis, stack.service, stack.queues, settings)
        first = await reconciler.reconcile_once()
        second = await reconciler.reconcile_once()
        after = await queued_job_ids(stack)

    assert expected <= before
    assert first == 5
    assert second == 0
    assert after == expected


async def test_reconciler_skips_job_in_progress(clean_redis, sqlite_url, key_prefix):
    settings = stack_settings(clean_redis, sqlite_url, key_prefix)
    async with running_stack(settings, start=False) as stack:
        run_id, state_id = await create_run(stack)
        job_id = f"{run_id}:{state_id}"
        await stack.redis.flushdb()
        await stack.redis.set(ARQ_IN_PROGRESS_PREFIX + job_id, b"1")

        restored = await Reconciler(
            stack.redis, stack.service, stack.queues, settings
        ).reconcile_once()

    assert restored == 0


async def test_reconciler_acts_after_redis_restart(sqlite_url, key_prefix):
    server = RedisServer().start()
    settings = stack_settings(server.url, sqlite_url, key_prefix, reconcile_interval=3600)
    try:
        async with running_stack(settings, start=False) as stack:
            runs = [await create_run(stack) for _ in range(3)]
            expected = {f"{run_id}:{state_id}" for run_id, state_id in runs}
            reconciler = Reconciler(stack.redis, stack.service, stack.queues, settings)
            stop = asyncio.Event()
            task = asyncio.create_task(reconciler.run(stop))
            for _ in range(600):
                if reconciler.watcher.run_id is not None:
                    break
                await asyncio.sleep(0.05)

            server.restart()
            restored: set[str] = set()
            for _ in range(600):
                try:
                    restored = await queued_job_ids(stack)
                except RedisError:
                    restored = set()
                if restored == expected:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
    finally:
        server.stop()

    assert restored == expected
