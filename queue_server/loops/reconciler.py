"""The reconciler: put back every committed Scheduled background run missing from Redis.

SQL is the system of record. A Redis restart without persistence, or a crash between a
commit and its enqueue, can leave a Scheduled background run with no queue entry. The
reconciler finds each such run (one with neither a queue entry nor an arq in-progress
key) and writes the entry itself. Enqueueing is idempotent by job id, so two replicas
reconciling at once restore each run once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_server.errors import StorageFault
from queue_server.jobs import JobSpec
from queue_server.loops.periodic import RedisRestartWatcher, sleep_or_stop
from queue_server.queues import TaskQueues
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

# How often the reconciler checks whether Redis restarted, in seconds, at most.
RESTART_CHECK_SECONDS = 1.0
# Runs read per query. A pass reads the Scheduled runs page by page, so the service's
# memory does not grow with the number of queued runs.
PAGE_SIZE = 500


class ScheduledJobsReader(Protocol):
    """The part of TransitionService the reconciler calls."""

    async def scheduled_background_jobs(
        self, *, after: UUID | None = None, limit: int | None = None
    ) -> list[JobSpec]: ...


class Reconciler:
    """Restores missing queue entries every ``reconcile_interval`` and after a Redis restart."""

    def __init__(
        self,
        redis: aioredis.Redis,
        service: ScheduledJobsReader,
        queues: TaskQueues,
        settings: Settings,
    ) -> None:
        self.service = service
        self.queues = queues
        self.settings = settings
        self.watcher = RedisRestartWatcher(redis)

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile at start, then on every interval or Redis restart, until `stop` is set."""
        logger.info("reconciler started; interval %.1f s", self.settings.reconcile_interval)
        next_pass = 0.0
        tick = min(RESTART_CHECK_SECONDS, self.settings.reconcile_interval)
        while True:
            try:
                restarted = await self.watcher.restarted()
                if restarted or time.monotonic() >= next_pass:
                    await self.reconcile_once()
                    next_pass = time.monotonic() + self.settings.reconcile_interval
            except (RedisError, OSError, StorageFault) as error:
                logger.warning("reconciler pass failed: %s; retrying", error)
            if await sleep_or_stop(stop, tick):
                break
        logger.info("reconciler stopped")

    async def reconcile_once(self) -> int:
        """Restore the missing entries, one page of Scheduled runs at a time; return how many."""
        restored = checked = 0
        after: UUID | None = None
        while True:
            jobs = await self.service.scheduled_background_jobs(after=after, limit=PAGE_SIZE)
            checked += len(jobs)
            restored += await self._restore(jobs)
            if len(jobs) < PAGE_SIZE:
                break
            after = jobs[-1].run_id
        if restored:
            logger.warning(
                "reconciler restored %d of %d Scheduled background runs missing from Redis",
                restored, checked,
            )
        return restored

    async def _restore(self, jobs: list[JobSpec]) -> int:
        missing = await self.queues.missing(jobs)
        if not missing:
            return 0
        restored = await self.queues.enqueue(missing)
        for job in missing:
            logger.info(
                "reconciler restored run %s (state %s) on task key %s",
                job.run_id, job.state_id, job.task_key,
            )
        return restored
