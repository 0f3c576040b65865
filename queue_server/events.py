"""Announce committed state changes on ``<prefix>:events`` and cache final runs in Redis.

Both happen only after the batch that made the change has committed, so a subscriber
never hears of a state that SQL does not hold. The cached run view is a fast path for
readers; SQL keeps the result itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from queue_server.keys import Keys
from queue_server.protocol import StateEvent, TaskRunView

logger = logging.getLogger(__name__)


class EventPublisher:
    """Publishes StateEvents and caches final TaskRunViews."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, result_cache_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.result_cache_ttl = result_cache_ttl

    async def publish(
        self, events: Sequence[StateEvent], results: Sequence[TaskRunView] = ()
    ) -> None:
        """Cache the final runs first, then publish the events, so a listener can read at once."""
        if not events and not results:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self.add_to(pipe, events, results)
            await pipe.execute()

    def add_to(
        self, pipe: Pipeline, events: Sequence[StateEvent], results: Sequence[TaskRunView] = ()
    ) -> None:
        """Queue `publish`'s commands on `pipe`, for a caller that sends more in one trip."""
        for view in results:
            # The value of an unpersisted result lives only in this key, written by
            # the worker; NX keeps the service's view without it from replacing it.
            pipe.set(
                self.keys.result(view.id),
                view.model_dump_json(),
                ex=self.result_cache_ttl,
                nx=_is_unpersisted(view),
            )
        for event in events:
            pipe.publish(self.keys.events, event.model_dump_json())
        if events or results:
            logger.debug(
                "publishing %d state events and caching %d results", len(events), len(results)
            )

    async def cached_result(self, run_id: object) -> TaskRunView | None:
        """Return the cached final view of a run, or None when it is not cached."""
        raw = await self.redis.get(self.keys.result(str(run_id)))
        if raw is None:
            return None
        return TaskRunView.model_validate_json(raw)


def _is_unpersisted(view: TaskRunView) -> bool:
    data = view.state.data if view.state is not None else None
    return isinstance(data, dict) and data.get("type") == "unpersisted"
