"""Wake each task key's consumer when its queue has a due run, at a cost independent of the keys.

A consumer sleeps until it is woken. It is woken when the service announces an enqueue
on the wake channel, when a concurrency slot frees up while it had more work than
slots, and by the fallback poll below. The fallback poll reads the head of every served
queue in one pipelined round trip (plus Redis's clock), so serving many task keys costs
one round trip per poll delay, not one per key. When a queue's earliest run is due
sooner than the poll delay, the next poll happens at that due time, so runs deferred
with countdown or eta start on time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import redis.asyncio as aioredis

from queue_server.keys import Keys
from queue_server.transport_client import REDIS_DOWN_ERRORS

logger = logging.getLogger(__name__)


class Wakeable(Protocol):
    wake: asyncio.Event


class RedisClock:
    """Redis's clock as seen from here: local time plus the offset measured by the last poll."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return _local_ms() + self.offset_ms

    def update(self, redis_seconds: int, redis_microseconds: int) -> None:
        self.offset_ms = redis_seconds * 1000 + redis_microseconds // 1000 - _local_ms()


def _local_ms() -> int:
    return int(time.time() * 1000)


class QueueWatcher:
    """Decides when each consumer looks at its queue."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        consumers: Mapping[str, Wakeable],
        poll_delay: float,
        clock: RedisClock,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.consumers = dict(consumers)
        self.poll_delay = poll_delay
        self.clock = clock

    def on_wake_message(self, data: bytes) -> None:
        """Wake the consumer of the task key the service just enqueued a run for."""
        consumer = self.consumers.get(data.decode(errors="replace"))
        if consumer is not None:
            consumer.wake.set()

    def wake_all(self) -> None:
        for consumer in self.consumers.values():
            consumer.wake.set()

    async def run(self) -> None:
        """Poll the heads of all queues every poll delay, or sooner when a run falls due."""
        while True:
            try:
                until_due = await self.poll_once()
            except REDIS_DOWN_ERRORS as error:
                logger.warning("polling the queues failed: %s", error)
                until_due = None
            delay = self.poll_delay if until_due is None else min(self.poll_delay, until_due)
            await asyncio.sleep(max(delay, 0.001))

    async def poll_once(self) -> float | None:
        """Wake the consumers whose queue has a due run; return seconds until the next is due."""
        task_keys = list(self.consumers)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for task_key in task_keys:
                pipe.zrange(self.keys.queue(task_key), 0, 0, withscores=True)
            answers = await pipe.execute()

        seconds, microseconds = answers[0]
        self.clock.update(int(seconds), int(microseconds))
        now_ms = self.clock.now_ms()
        earliest_future: float | None = None
        for task_key, head in zip(task_keys, answers[1:], strict=True):
            if not head:
                continue
            due_ms = head[0][1]
            if due_ms <= now_ms:
                self.consumers[task_key].wake.set()
            elif earliest_future is None or due_ms < earliest_future:
                earliest_future = due_ms
        return None if earliest_future is None else (earliest_future - now_ms) / 1000
