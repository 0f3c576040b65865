"""One pub/sub connection per worker for the wake and events channels, resubscribed on failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from queue_server.transport_client import REDIS_DOWN_ERRORS

logger = logging.getLogger(__name__)

RESUBSCRIBE_DELAY_SECONDS = 0.5


class ChannelListener:
    """Calls a handler per message on each channel; `on_resubscribe` runs after every subscribe.

    Messages published while the connection was down are lost, so `on_resubscribe` is the
    place to catch up (the worker polls its queues there).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        handlers: dict[str, Callable[[bytes], None]],
        on_resubscribe: Callable[[], None],
    ) -> None:
        self.redis = redis
        self.handlers = {name.encode(): handler for name, handler in handlers.items()}
        self.on_resubscribe = on_resubscribe
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self.handlers)
                failures = 0
                self.subscribed.set()
                self.on_resubscribe()
                async for message in pubsub.listen():
                    handler = self.handlers.get(message["channel"])
                    if handler is not None:
                        handler(message["data"])
            except REDIS_DOWN_ERRORS as error:
                self.subscribed.clear()
                level = logging.WARNING if failures == 0 else logging.DEBUG
                logger.log(level, "worker subscription failed: %s; subscribing again", error)
                failures += 1
                await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
            finally:
                with contextlib.suppress(*REDIS_DOWN_ERRORS):
                    await pubsub.aclose()
