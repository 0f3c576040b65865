"""Scheduled runs per task key, counted in SQL and reused for a short while.

Every create checks its task key's queue against `TASKGATE_MAX_QUEUED_PER_TASK_KEY`.
Counting the key's Scheduled runs is an index scan as long as the queue, so the
service counts a key at most once per `MAX_AGE_SECONDS` and adds its own creates in
between. Claims in the meantime are not subtracted, so the kept count errs high.
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

    def update(self, task_key: str, count: int) -> None:
        """Replace a kept count after committed creates, keeping the time it was read."""
        entry = self._counts.get(task_key)
        if entry is not None:
            self._counts[task_key] = (count, entry[1])

    def forget(self, task_key: str) -> None:
        self._counts.pop(task_key, None)
