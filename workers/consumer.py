"""One arq consumer per task key, all sharing one concurrency limit, woken instead of polling.

`TaskKeyConsumer` keeps arq's job handling: the in-progress guard that stops two
workers from taking one job, its retry bookkeeping and the JSON job format. It replaces
two things. Its poll loop sleeps until the `QueueWatcher` wakes it, instead of polling
every half second. Its semaphore is swapped for one shared by every consumer of the
process, so the worker's concurrency is one limit across all of its task keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker, func

from queue_server.jobs import deserialize_job, serialize_job
from queue_server.keys import ARQ_IN_PROGRESS_PREFIX, JOB_FUNCTION_NAME, Keys
from workers.watcher import RedisClock

logger = logging.getLogger(__name__)

# arq counts the deliveries of a job and drops it after max_tries. taskgate's policy
# decides retries and a redelivered job is claimed only once, so arq's limit is disabled.
ARQ_MAX_TRIES = 1_000_000
# Job ids read per look at the queue: enough to step past the few jobs that other
# workers are claiming at the same moment.
MIN_READ_LIMIT = 100


class TaskKeyConsumer(Worker):
    """arq's Worker for one task key's queue, without its poll loop, health key or signals."""

    def __init__(
        self,
        *,
        task_key: str,
        handler: Callable[..., Any],
        keys: Keys,
        pool: ArqRedis,
        slots: asyncio.BoundedSemaphore,
        concurrency: int,
        clock: RedisClock,
        on_slot_freed: Callable[[], None],
    ) -> None:
        super().__init__(
            functions=[func(handler, name=JOB_FUNCTION_NAME, max_tries=ARQ_MAX_TRIES)],
            queue_name=keys.queue(task_key),
            redis_pool=pool,
            handle_signals=False,
            max_jobs=concurrency,
            job_timeout=None,
            keep_result=0,
            queue_read_limit=max(MIN_READ_LIMIT, concurrency * 5),
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
            log_results=False,
        )
        self.task_key = task_key
        self.sem = slots
        self.clock = clock
        self.wake = asyncio.Event()
        self.starved = False
        self._on_slot_freed = on_slot_freed

    async def main(self) -> None:
        """Look at the queue each time the consumer is woken, until cancelled."""
        self.ctx["redis"] = self.pool
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self._poll_iteration()

    async def _poll_iteration(self) -> None:
        self._forget_finished()
        if not self.allow_pick_jobs:
            return
        if self.sem.locked():
            self.starved = True
            return
        job_ids = await self.pool.zrangebyscore(
            self.queue_name,
            min=float("-inf"),
            max=self.clock.now_ms(),
            start=0,
            num=self.queue_read_limit,
        )
        await self.start_jobs(job_ids)
        if len(job_ids) == self.queue_read_limit and not self.sem.locked():
            # The page was full: more due jobs may wait behind it.
            self.wake.set()

    async def start_jobs(self, job_ids: Sequence[bytes]) -> None:
        """Start jobs while a shared slot is free, and stop at the first full slot.

        Waiting for a slot with this list in hand would start jobs that other workers
        took meanwhile, or start them after shutdown began. Jobs already running here
        or elsewhere are skipped before arq's per-job transaction (see `_not_started`).
        """
        for job_id in await self._not_started(job_ids):
            if not self.allow_pick_jobs:
                return
            if self.sem.locked():
                self.starved = True
                return
            await super().start_jobs([job_id])

    async def _not_started(self, job_ids: Sequence[bytes]) -> list[bytes]:
        """Drop the jobs running here, and those whose arq in-progress key exists.

        arq leaves a job in its queue until the job ends, so every read of the queue
        returns the jobs other workers are running. arq's check of each costs a
        WATCH, EXISTS, ZSCORE and UNWATCH. One MGET of the in-progress keys finds
        them all at once. A job that starts elsewhere after the MGET is still caught
        by arq's own check.
        """
        candidates = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if not candidates:
            return []
        markers = await self.pool.mget(
            [ARQ_IN_PROGRESS_PREFIX + job_id.decode() for job_id in candidates]
        )
        return [job_id for job_id, marker in zip(candidates, markers, strict=True) if not marker]

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._on_slot_freed()

    def _forget_finished(self) -> None:
        for job_id, job_task in list(self.tasks.items()):
            if job_task.done():
                del self.tasks[job_id]
                if not job_task.cancelled() and job_task.exception() is not None:
                    logger.error(
                        "job %s on %s ended with an error outside any run: %r",
                        job_id,
                        self.task_key,
                        job_task.exception(),
                    )

    async def heart_beat(self) -> None:
        """Do nothing: the worker's own heartbeat thread reports its health."""

    async def close(self) -> None:
        """Wait for the consumer's jobs; the runtime closes the shared Redis pool itself."""
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def in_flight(self) -> int:
        return sum(not job_task.done() for job_task in self.tasks.values())
