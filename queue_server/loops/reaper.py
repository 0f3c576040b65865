"""The reaper: move the runs of workers whose heartbeat key has expired.

A worker refreshes ``<prefix>:workers:<worker_id>`` while it lives. When the key is gone
and SQL still names that worker on some runs, the service releases them. Pending goes
back to Scheduled, Running to AwaitingRetry while attempts remain (else Crashed), and
Cancelling to Cancelled. Each release is a row-locked transition that clears the claim
token, so any replica may reap.

A heartbeat is missing for a while after the service starts (the worker's next beat
may not have come yet) and after Redis restarts (the restart lost every key), so the
reaper judges nobody until one heartbeat TTL has passed since either event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_server.errors import StorageFault
from queue_server.keys import Keys
from queue_server.loops.periodic import RedisRestartWatcher, sleep_or_stop
from queue_server.post_commit import PostCommit
from queue_server.settings import Settings

logger = logging.getLogger(__name__)


class WorkerReleaser(Protocol):
    """The part of TransitionService the reaper calls."""

    async def workers_holding_runs(self) -> dict[str, list[UUID]]: ...

    async def release_worker(
        self, worker_id: str, run_ids: list[UUID] | None = None
    ) -> tuple[list[Any], Any]: ...


class Reaper:
    """Releases the runs of dead workers, after a grace period of one heartbeat TTL."""

    def __init__(
        self,
        redis: aioredis.Redis,
        service: WorkerReleaser,
        post_commit: PostCommit,
        settings: Settings,
    ) -> None:
        self.redis = redis
        self.service = service
        self.post_commit = post_commit
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.watcher = RedisRestartWatcher(redis)
        self.judge_after = time.monotonic() + settings.heartbeat_ttl

    async def run(self, stop: asyncio.Event) -> None:
        """Reap every ``reaper_interval`` seconds until `stop` is set."""
        logger.info(
            "reaper started; judging workers after a grace of %.1f s", self.settings.heartbeat_ttl
        )
        while True:
            try:
                await self.reap_once()
            except (RedisError, OSError, StorageFault) as error:
                logger.warning("reaper pass failed: %s; retrying next pass", error)
            if await sleep_or_stop(stop, self.settings.reaper_interval):
                break
        logger.info("reaper stopped")

    async def reap_once(self) -> list[str]:
        """Run one pass; return the ids of the workers whose runs were released."""
        if await self.watcher.restarted():
            self.judge_after = time.monotonic() + self.settings.heartbeat_ttl
            logger.info(
                "reaper waits %.1f s for workers to beat again after the Redis restart",
                self.settings.heartbeat_ttl,
            )
        if time.monotonic() < self.judge_after:
            return []

        holders = await self.service.workers_holding_runs()
        if not holders:
            return []
        worker_ids = sorted(holders)
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in worker_ids:
                pipe.exists(self.keys.worker(worker_id))
            alive = await pipe.execute()

        reaped: list[str] = []
        for worker_id, is_alive in zip(worker_ids, alive, strict=True):
            if is_alive:
                continue
            await self._release(worker_id, holders[worker_id])
            reaped.append(worker_id)
        return reaped

    async def _release(self, worker_id: str, run_ids: list[UUID]) -> None:
        logger.warning(
            "heartbeat of worker %s expired; releasing its runs %s",
            worker_id, ", ".join(str(run_id) for run_id in run_ids),
        )
        results, effects = await self.service.release_worker(worker_id, run_ids)
        await self.post_commit.carry_out(effects)
        for result in results:
            run_id = getattr(result, "run_id", None)
            status = getattr(result, "status", None)
            state = getattr(result, "state", None)
            logger.info(
                "reaper released run %s of worker %s: %s, now %s",
                run_id, worker_id, status, getattr(state, "name", None),
            )
