"""Scheduled runs per task key, counted in SQL and reused for a short while.

Every create checks its task key's queue against `TASKGATE_MAX_QUEUED_PER_TASK_KEY`.
Counting the key's Scheduled runs is an index scan as long as the queue, so the
service reuses a key's count for up to `MAX_AGE_SECONDS`. In between it adds the runs
its own batches moved into Scheduled and subtracts those they moved out. Changes made
by other replicas are seen at the next count.
"""

from __future__ import annotations

import time

MAX_AGE_SECONDS = 1.0


class QueuedCounts:
    """The last count of each task key's Scheduled runs, with the time it was taken."""

    def __init__(self, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self.max_age_seconds = max_age_seconds
        self._counts: dict[str, tuple[int, float]] = {}

    def get(self, task_key: str) -> int | None:
        """Return the kept count of `task_key`, or None when it is missing or too old."""
        entry = self._counts.get(task_key)
        if entry is None or time.monotonic() - entry[1] > self.max_age_seconds:
            return None
        return entry[0]

    def counted(self, task_key: str, count: int) -> None:
        """Keep a count just read from SQL."""
        self._counts[task_key] = (count, time.monotonic())

    def add(self, task_key: str, change: int) -> None:
        """Move a kept count by committed changes, keeping the time it was read."""
        entry = self._counts.get(task_key)
        if entry is not None:
            self._counts[task_key] = (entry[0] + change, entry[1])

    def clear(self) -> None:
        """Forget every count, after changes this service did not follow one by one."""
        self._counts.clear()
