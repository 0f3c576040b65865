"""The service replica's own heartbeat key, ``<prefix>:service:<replica_id>``.

It shows operators (and tests) which replicas are alive. Nothing in the service judges
replicas by it, because the request stream's pending list already hands a dead
replica's work to the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from policy.states import utc_now
from queue_server.keys import Keys
from queue_server.loops.periodic import sleep_or_stop
from queue_server.settings import Settings

logger = logging.getLogger(__name__)


class ReplicaHeartbeat:
    """Refreshes the replica's heartbeat key every third of the heartbeat TTL."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, replica_id: str) -> None:
        self.redis = redis
        self.settings = settings
        self.replica_id = replica_id
        self.key = Keys(settings.key_prefix).service(replica_id)
        self.started_at = utc_now().isoformat()

    async def beat(self) -> None:
        """Write the heartbeat key with its TTL."""
        document = {
            "replica_id": self.replica_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "beat_at": utc_now().isoformat(),
        }
        ttl_ms = max(1, int(self.settings.heartbeat_ttl * 1000))
        await self.redis.set(self.key, json.dumps(document), px=ttl_ms)

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop` is set, then delete the key."""
        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as error:
                logger.warning(
                    "replica %s could not write its heartbeat: %s", self.replica_id, error
                )
            if await sleep_or_stop(stop, self.settings.heartbeat_ttl / 3):
                break
        try:
            await self.redis.delete(self.key)
        except (RedisError, OSError) as error:
            logger.warning("replica %s could not delete its heartbeat: %s", self.replica_id, error)
