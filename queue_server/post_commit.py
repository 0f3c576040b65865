"""Carry out what a committed transaction asked for: enqueue jobs, publish events, cache results.

Every caller of the transition service (the transport, the reaper, the reconciler and
the HTTP API) hands the effects it gets back to `PostCommit.carry_out`, and only after
the service has committed them.
"""

from __future__ import annotations

import logging
from typing import Any

from queue_server.events import EventPublisher
from queue_server.queues import TaskQueues

logger = logging.getLogger(__name__)


class PostCommit:
    """Applies the Redis side of committed effects."""

    def __init__(self, queues: TaskQueues, events: EventPublisher) -> None:
        self.queues = queues
        self.events = events

    async def carry_out(self, effects: Any) -> None:
        """Enqueue the jobs, then cache the results and publish the events.

        `effects` has the lists ``jobs`` (JobSpec), ``events`` (StateEvent) and
        ``results`` (TaskRunView). A Redis error propagates, and the reconciler later
        restores a job lost that way.

        NOTE: an event lost to a Redis error after the commit is not sent again, so a
        listener must fall back to reading the run (futures poll for this reason).
        """
        await self.enqueue(effects)
        await self.publish(effects)

    async def enqueue(self, effects: Any) -> None:
        """Put the effects' jobs on their queues, which wakes the workers."""
        jobs = list(getattr(effects, "jobs", []) or [])
        if jobs:
            await self.queues.enqueue(jobs)

    async def publish(self, effects: Any) -> None:
        """Cache the effects' final runs, then publish their events."""
        await self.events.publish(*_events_and_results(effects))

    def add_publish(self, pipe: Any, effects: Any) -> None:
        """Queue `publish`'s commands on `pipe`, for a caller that sends more in one trip."""
        self.events.add_to(pipe, *_events_and_results(effects))


def _events_and_results(effects: Any) -> tuple[list[Any], list[Any]]:
    events = list(getattr(effects, "events", []) or [])
    results = list(getattr(effects, "results", []) or [])
    return events, results
