"""Wait for runs to reach a final state: events first, polling as the fallback.

One `RunWaiter` per client listens on the ``<prefix>:events`` channel. A waiter
subscribes before it first reads the runs, so a state committed between the read and the
subscription is never missed. A notification lost on the way (a dropped pub/sub
connection, say) costs at most one poll interval, because every waiter also reads its
runs every ``future_poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from uuid import UUID

import redis.asyncio as aioredis

from policy.states import TERMINAL_STATES
from queue_server.keys import Keys
from queue_server.protocol import TaskRunView
from queue_server.transport_client import REDIS_DOWN_ERRORS, ServiceClient

logger = logging.getLogger(__name__)

FINAL_TYPE_NAMES = frozenset(state_type.value for state_type in TERMINAL_STATES)
# Most events are not final. A final event's JSON contains one of these names.
FINAL_MARKERS = tuple(name.encode() for name in FINAL_TYPE_NAMES)
RESUBSCRIBE_DELAY_SECONDS = 0.5
# Runs asked of the service per poll interval by one waiter, and per read_runs request.
POLL_BATCH = 100
SERVICE_READ_BATCH = 1000


class RunWaiter:
    """Resolves waits on run ids from the events channel and from polling."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        service: ServiceClient,
        *,
        poll_interval: float,
        listen_events: bool = True,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.service = service
        self.poll_interval = poll_interval
        self.listen_events = listen_events
        self._watches: dict[UUID, set[_Watch]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def wait(
        self,
        run_ids: Iterable[UUID],
        *,
        timeout: float | None,  # noqa: ASYNC109
        first: bool = False,
    ) -> dict[UUID, TaskRunView]:
        """Return the final views of the runs that ended before `timeout` seconds passed.

        With `first`, return as soon as one run has ended. Without a timeout, wait until
        all of them (or one, with `first`) have ended.
        """
        await self._ensure_listening()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        watch = _Watch(set(run_ids))
        for run_id in watch.pending:
            self._watches.setdefault(run_id, set()).add(watch)

        finished: dict[UUID, TaskRunView] = {}
        try:
            finished.update(await self.read_final(watch.pending))
            watch.pending -= finished.keys()
            while watch.pending and not (first and finished):
                wait = self.poll_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        break
                notified = await watch.next_signal(wait)
                found = await self.read_final(watch.take_fired())
                if not notified:
                    found.update(await self._poll(watch))
                finished.update(found)
                watch.pending -= found.keys()
        finally:
            for run_id in watch.all_ids:
                watches = self._watches.get(run_id)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[run_id]
        return finished

    async def _poll(self, watch: _Watch) -> dict[UUID, TaskRunView]:
        """Read the pending runs: all from the result cache, a bounded batch from the service.

        The cache is one MGET however many runs wait. The service is asked about at
        most POLL_BATCH runs per poll, taking the runs in turn, so a thousand waiting
        futures do not cost it a thousand reads every interval. The price is paid only
        when both a notification and the cache entry are lost: a few intervals of delay.
        """
        pending = sorted(watch.pending)
        found = await self._read_cached(pending)
        remaining = [run_id for run_id in pending if run_id not in found]
        if remaining:
            start = watch.poll_offset % len(remaining)
            batch = (remaining[start:] + remaining[:start])[:POLL_BATCH]
            watch.poll_offset = start + len(batch)
            found.update(await self._read_from_service(batch))
        return found

    async def read_final(self, run_ids: Iterable[UUID]) -> dict[UUID, TaskRunView]:
        """Read the runs that are final: from the Redis result cache, else from the service."""
        wanted = list(run_ids)
        if not wanted:
            return {}
        found = await self._read_cached(wanted)
        missing = [run_id for run_id in wanted if run_id not in found]
        found.update(await self._read_from_service(missing))
        return found

    async def _read_cached(self, run_ids: list[UUID]) -> dict[UUID, TaskRunView]:
        if not run_ids:
            return {}
        try:
            cached = await self.redis.mget([self.keys.result(run_id) for run_id in run_ids])
        except REDIS_DOWN_ERRORS as error:
            logger.warning("reading cached results failed: %s; asking the service", error)
            return {}
        found: dict[UUID, TaskRunView] = {}
        for run_id, raw in zip(run_ids, cached, strict=True):
            if raw is not None:
                view = TaskRunView.model_validate_json(raw)
                if view.state is not None and view.state.is_final():
                    found[run_id] = view
        return found

    async def _read_from_service(self, run_ids: list[UUID]) -> dict[UUID, TaskRunView]:
        found: dict[UUID, TaskRunView] = {}
        for start in range(0, len(run_ids), SERVICE_READ_BATCH):
            batch = [str(run_id) for run_id in run_ids[start : start + SERVICE_READ_BATCH]]
            for item in await self.service.request("read_runs", {"run_ids": batch}):
                view = TaskRunView.model_validate(item)
                if view.state is not None and view.state.is_final():
                    found[view.id] = view
        return found

    async def read(self, run_id: UUID) -> TaskRunView:
        """Read the run's current view from the service."""
        return TaskRunView.model_validate(
            await self.service.request("read_run", {"run_id": str(run_id)})
        )

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def _ensure_listening(self) -> None:
        if not self.listen_events:
            return
        if self._listener is None or self._listener.done():
            self._subscribed.clear()
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="taskgate-run-events"
            )
        with contextlib.suppress(TimeoutError):
            # Polling covers the wait if the subscription is slow to start.
            await asyncio.wait_for(self._subscribed.wait(), self.poll_interval)

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events)
                failures = 0
                self._subscribed.set()
                # Events may have been missed while unsubscribed: let every waiter re-read.
                self._wake_all()
                async for message in pubsub.listen():
                    self._on_message(message.get("data"))
            except REDIS_DOWN_ERRORS as error:
                level = logging.WARNING if failures == 0 else logging.DEBUG
                logger.log(level, "the events subscription failed: %s; subscribing again", error)
                failures += 1
                self._subscribed.clear()
                await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
            finally:
                with contextlib.suppress(*REDIS_DOWN_ERRORS):
                    await pubsub.aclose()

    def _on_message(self, data: object) -> None:
        if not isinstance(data, bytes) or not any(marker in data for marker in FINAL_MARKERS):
            return
        try:
            event = json.loads(data)
            run_id = UUID(event["run_id"])
        except (ValueError, KeyError, TypeError):
            logger.debug("ignoring an unreadable state event: %r", data[:200])
            return
        if event.get("state_type") not in FINAL_TYPE_NAMES:
            return
        for watch in self._watches.get(run_id, ()):
            watch.notify(run_id)

    def _wake_all(self) -> None:
        for run_id, watches in self._watches.items():
            for watch in watches:
                watch.notify(run_id)


class _Watch:
    """One waiter's runs: those still pending, and those the events channel reported final."""

    def __init__(self, run_ids: set[UUID]) -> None:
        self.all_ids = frozenset(run_ids)
        self.pending = set(run_ids)
        self.fired: set[UUID] = set()
        self.signal = asyncio.Event()
        self.poll_offset = 0

    def notify(self, run_id: UUID) -> None:
        self.fired.add(run_id)
        self.signal.set()

    async def next_signal(self, wait: float) -> bool:
        """Wait up to `wait` seconds for a notification; return whether one came."""
        if not self.fired:
            self.signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.signal.wait(), wait)
        return bool(self.fired)

    def take_fired(self) -> list[UUID]:
        fired = [run_id for run_id in self.fired if run_id in self.pending]
        self.fired.clear()
        return fired
