"""The worker heartbeat, on its own thread so a run that blocks the event loop cannot stop it.

Every third of the heartbeat TTL the thread writes ``<prefix>:workers:<worker_id>`` with
the worker's host, pid, task keys and the runs it holds, expiring after the TTL. When the
key expires, the service's reaper takes the worker for dead and moves its runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from queue_server.keys import Keys
from queue_server.redis_conn import connect
from queue_server.transport_client import REDIS_DOWN_ERRORS

logger = logging.getLogger(__name__)


class Heartbeat:
    """Writes the heartbeat key until stopped; `stop(delete=True)` removes it on a clean exit."""

    def __init__(
        self,
        *,
        redis_url: str,
        keys: Keys,
        worker_id: str,
        task_keys: list[str],
        held_runs: Callable[[], list[UUID]],
        ttl: float,
    ) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.worker_id = worker_id
        self.task_keys = task_keys
        self.held_runs = held_runs
        self.ttl = ttl
        self.started_at = datetime.now(UTC).isoformat()
        self._stop = threading.Event()
        self._delete_on_stop = False
        self._thread = threading.Thread(target=self._run, name="taskgate-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, delete: bool) -> None:
        """Stop beating; with `delete`, remove the key so no reaper waits for it to expire."""
        self._delete_on_stop = delete
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.ttl))

    def payload(self) -> str:
        return json.dumps(
            {
                "worker_id": self.worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "task_keys": self.task_keys,
                "runs": [str(run_id) for run_id in self.held_runs()],
                "started_at": self.started_at,
                "beat_at": datetime.now(UTC).isoformat(),
            }
        )

    def _run(self) -> None:
        asyncio.run(self._beat_until_stopped())

    async def _beat_until_stopped(self) -> None:
        redis = connect(self.redis_url)
        key = self.keys.worker(self.worker_id)
        interval = self.ttl / 3
        try:
            while not self._stop.is_set():
                try:
                    await redis.set(key, self.payload(), px=int(self.ttl * 1000))
                except REDIS_DOWN_ERRORS as error:
                    logger.warning("worker %s heartbeat failed: %s", self.worker_id, error)
                # This loop serves only the heartbeat, so blocking it here is harmless.
                self._stop.wait(interval)
            if self._delete_on_stop:
                await redis.delete(key)
        finally:
            await redis.aclose()
