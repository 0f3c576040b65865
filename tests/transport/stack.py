"""A service replica in the test's own event loop: real SQL, real Redis, real consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database
from queue_server.events import EventPublisher
from queue_server.keys import Keys
from queue_server.post_commit import PostCommit
from queue_server.queues import TaskQueues
from queue_server.redis_conn import connect
from queue_server.service import TransitionService
from queue_server.settings import Settings
from queue_server.transport.server import RequestConsumer, ensure_group


@dataclass
class Stack:
    settings: Settings
    database: Database
    redis: aioredis.Redis
    keys: Keys
    service: TransitionService
    queues: TaskQueues
    post_commit: PostCommit
    consumer: RequestConsumer
    stop: asyncio.Event
    task: asyncio.Task | None = None

    def start_consumer(self) -> None:
        self.task = asyncio.create_task(self.consumer.run(self.stop))

    async def stop_consumer(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
            self.task = None
        self.stop = asyncio.Event()


def stack_settings(redis_url: str, database_url: str, key_prefix: str, **overrides) -> Settings:
    values = {
        "redis_url": redis_url,
        "database_url": database_url,
        "key_prefix": key_prefix,
        "claim_idle": 1.0,
        "heartbeat_ttl": 2.0,
        "reaper_interval": 0.2,
        "reconcile_interval": 0.5,
        "max_request_bytes": 20_000,
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    *,
    start: bool = True,
    database: Database | None = None,
    create_group: bool = True,
) -> AsyncIterator[Stack]:
    """Migrate the database, build the service and (unless `start` is False) its consumer."""
    await upgrade_database(settings.resolved_database_url())
    database = database or Database(settings.resolved_database_url())
    redis = connect(settings.redis_url)
    keys = Keys(settings.key_prefix)
    if create_group:
        await ensure_group(redis, keys)
    service = TransitionService(database, settings, replica_id="test-replica")
    queues = TaskQueues(redis, keys)
    post_commit = PostCommit(queues, EventPublisher(redis, keys, settings.result_cache_ttl))
    consumer = RequestConsumer(redis, service, post_commit, settings, "test-replica")
    stack = Stack(
        settings, database, redis, keys, service, queues, post_commit, consumer, asyncio.Event()
    )
    if start:
        stack.start_consumer()
    try:
        yield stack
    finally:
        await stack.stop_consumer()
        await redis.aclose()
        await database.dispose()


async def acked(stack: Stack) -> dict:
    """Wait until the consumer group has nothing pending (replies go out before the XACK)."""
    for _ in range(600):
        pending = await stack.redis.xpending(stack.keys.requests, "taskgate-service")
        if pending["pending"] == 0:
            break
        await asyncio.sleep(0.05)
    return pending
