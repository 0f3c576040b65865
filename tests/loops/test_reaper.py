"""The reaper moves the runs of workers whose heartbeat expired, after its grace period."""

from __future__ import annotations

import asyncio
import time

import pytest

from queue_server.loops.reaper import Reaper
from tests.loops.runs import claim, create_run
from tests.servers import RedisServer
from tests.transport.stack import running_stack, stack_settings

pytestmark = pytest.mark.integration

PASSES = 600  # reaper passes tried before a test gives up, 0.05 s apart


async def reap_until(reaper: Reaper, worker_id: str) -> list[str]:
    for _ in range(PASSES):
        reaped = await reaper.reap_once()
        if worker_id in reaped:
            return reaped
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker {worker_id} was never reaped")


async def test_reaper_moves_runs_of_expired_worker(clean_redis, database_url, key_prefix):
    settings = stack_settings(clean_redis, database_url, key_prefix, heartbeat_ttl=1.0)
    async with running_stack(settings, start=False) as stack:
        retrying = await create_run(stack, retries=1)
        last_try = await create_run(stack, retries=0)
        claimed = await create_run(stack, retries=0)
        kept = await create_run(stack, retries=0)
        await claim(stack, *retrying, "worker-dead", start=True)
        await claim(stack, *last_try, "worker-dead", start=True)
        await claim(stack, *claimed, "worker-dead", start=False)
        await claim(stack, *kept, "worker-alive", start=True)
        await stack.redis.set(stack.keys.worker("worker-dead"), b"{}", px=200)
        await stack.redis.set(stack.keys.worker("worker-alive"), b"{}", px=600_000)

        reaper = Reaper(stack.redis, stack.service, stack.post_commit, settings)
        reaped = await reap_until(reaper, "worker-dead")
        states = {
            name: (await stack.service.read_run(run_id)).state
            for name, (run_id, _) in {
                "retrying": retrying, "last_try": last_try, "claimed": claimed, "kept": kept,
            }.items()
        }
        queued = {
            item.decode()
            for item in await stack.redis.zrange(stack.keys.queue("tests.add"), 0, -1)
        }
        holders = await stack.service.workers_holding_runs()

    assert reaped == ["worker-dead"]
    assert states["retrying"].type.value == "SCHEDULED"
    assert states["retrying"].name == "AwaitingRetry"
    assert states["last_try"].type.value == "CRASHED"
    assert (states["claimed"].type.value, states["claimed"].name) == ("SCHEDULED", "Scheduled")
    assert states["kept"].type.value == "RUNNING"
    assert f"{retrying[0]}:{states['retrying'].id}" in queued
    assert f"{claimed[0]}:{states['claimed'].id}" in queued
    assert "worker-dead" not in holders
    assert [run_id for run_id in holders["worker-alive"]] == [kept[0]]


async def test_reaper_waits_grace_after_start(clean_redis, sqlite_url, key_prefix):
    settings = stack_settings(clean_redis, sqlite_url, key_prefix, heartbeat_ttl=600.0)
    async with running_stack(settings, start=False) as stack:
        run = await create_run(stack)
        await claim(stack, *run, "worker-silent", start=True)

        reaper = Reaper(stack.redis, stack.service, stack.post_commit, settings)
        reaped = await reaper.reap_once()
        state = (await stack.service.read_run(run[0])).state

    assert reaped == []
    assert state.type.value == "RUNNING"


async def test_reaper_waits_grace_after_redis_restart(sqlite_url, key_prefix):
    server = RedisServer().start()
    settings = stack_settings(server.url, sqlite_url, key_prefix, heartbeat_ttl=1.5)
    try:
        async with running_stack(settings, start=False) as stack:
            returning = await create_run(stack)
            gone = await create_run(stack)
            await claim(stack, *returning, "worker-returning", start=True)
            await claim(stack, *gone, "worker-gone", start=True)
            for worker_id in ("worker-returning", "worker-gone"):
                await stack.redis.set(stack.keys.worker(worker_id), b"{}", px=600_000)
            reaper = Reaper(stack.redis, stack.service, stack.post_commit, settings)
            reaper.judge_after = 0.0  # the start-up grace is covered by another test
            before_restart = await reaper.reap_once()

            server.restart()  # every heartbeat key is lost
            seen_at = time.monotonic()
            during_grace = await reaper.reap_once()
            state_during_grace = (await stack.service.read_run(gone[0])).state
            # The live worker beats again within the grace; the other never does.
            await stack.redis.set(stack.keys.worker("worker-returning"), b"{}", px=600_000)
            reaped = await reap_until(reaper, "worker-gone")
            reaped_at = time.monotonic()
            returning_state = (await stack.service.read_run(returning[0])).state
            gone_state = (await stack.service.read_run(gone[0])).state
    finally:
        server.stop()

    assert before_restart == []
    assert during_grace == []
    assert state_during_grace.type.value == "RUNNING"
    assert reaped == ["worker-gone"]
    assert reaped_at - seen_at >= settings.heartbeat_ttl
    assert returning_state.type.value == "RUNNING"
    assert gone_state.type.value == "CRASHED"
