"""Helpers shared by the background loops: stoppable sleeps and Redis restart detection."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

logger = logging.getLogger(__name__)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; return True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


class RedisRestartWatcher:
    """Tells when the Redis server restarted, by watching the ``run_id`` in INFO server.

    A restarted Redis without persistence has lost every queue entry and heartbeat key,
    so the reaper must wait and the reconciler must look at once.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.run_id: str | None = None

    async def restarted(self) -> bool:
        """Read the server's run id; return True when it differs from the last one seen."""
        info = await self.redis.info("server")
        run_id = str(info.get("run_id", ""))
        previous, self.run_id = self.run_id, run_id
        if previous is not None and previous != run_id:
            logger.warning("Redis restarted: server run id changed from %s to %s", previous, run_id)
            return True
        return False
