"""The per-task-key arq queues in Redis: enqueue committed Scheduled runs, inspect, find gaps.

The service writes each job itself with ``enqueue.lua`` instead of arq's own enqueue,
because arq refuses a job id whose job key still exists, and the reconciler must be
able to restore a queue entry whatever Redis kept. The job id is ``<run_id>:<state_id>``,
so a repeated enqueue of the same Scheduled state is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import redis.asyncio as aioredis

from queue_server.jobs import JobSpec
from queue_server.keys import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX, Keys

logger = logging.getLogger(__name__)

# arq's own default: a job not taken within a day of its due time expires.
JOB_EXPIRY_AFTER_DUE_MS = 86_400_000
ENQUEUE_SCRIPT = resources.files("queue_server").joinpath("enqueue.lua").read_text()


@dataclass(frozen=True)
class QueueDepth:
    """How many runs wait in one task key's queue, and when the earliest is due."""

    task_key: str
    depth: int
    oldest_due: datetime | None


async def redis_time_ms(redis: aioredis.Redis) -> int:
    """Return Redis's clock in ms: every due time is judged by one clock, not the caller's."""
    seconds, microseconds = await redis.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


class TaskQueues:
    """Writes and reads the arq queues ``<prefix>:queue:<task_key>``."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._enqueue = redis.register_script(ENQUEUE_SCRIPT)

    async def enqueue(self, jobs: Sequence[JobSpec]) -> int:
        """Put the jobs on their queues and wake their workers; return how many were new.

        Call this only after the Scheduled states of the jobs are committed.
        """
        if not jobs:
            return 0
        now_ms = await redis_time_ms(self.redis)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                expires_at_ms = max(job.due_ms, now_ms) + JOB_EXPIRY_AFTER_DUE_MS
                await self._enqueue(
                    keys=[
                        ARQ_JOB_PREFIX + job.job_id,
                        self.keys.queue(job.task_key),
                        ARQ_IN_PROGRESS_PREFIX + job.job_id,
                    ],
                    args=[
                        job.job_id,
                        job.arq_payload(now_ms),
                        job.due_ms,
                        expires_at_ms,
                        self.keys.wake,
                        job.task_key,
                    ],
                    client=pipe,
                )
            added = await pipe.execute()
        for job, was_added in zip(jobs, added, strict=True):
            if was_added:
                logger.debug("enqueued run %s on task key %s", job.run_id, job.task_key)
        return sum(int(value) for value in added)

    async def missing(self, jobs: Sequence[JobSpec]) -> list[JobSpec]:
        """Return the jobs that have neither a queue entry nor an in-progress key."""
        if not jobs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.zscore(self.keys.queue(job.task_key), job.job_id)
                pipe.exists(ARQ_IN_PROGRESS_PREFIX + job.job_id)
            answers = await pipe.execute()
        found: list[JobSpec] = []
        for index, job in enumerate(jobs):
            score, in_progress = answers[2 * index], answers[2 * index + 1]
            if score is None and not in_progress:
                found.append(job)
        return found

    async def depths(self) -> list[QueueDepth]:
        """Return the depth and earliest due time of every task key's queue, by task key."""
        prefix = self.keys.queue("")
        names = [name async for name in self.redis.scan_iter(match=self.keys.queue_pattern)]
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(name)
                pipe.zrange(name, 0, 0, withscores=True)
            answers = await pipe.execute()
        depths: list[QueueDepth] = []
        for index, name in enumerate(names):
            text = name.decode() if isinstance(name, bytes) else name
            count, first = answers[2 * index], answers[2 * index + 1]
            oldest = datetime.fromtimestamp(first[0][1] / 1000, UTC) if first else None
            depths.append(QueueDepth(task_key=text[len(prefix):], depth=count, oldest_due=oldest))
        return sorted(depths, key=lambda item: item.task_key)
