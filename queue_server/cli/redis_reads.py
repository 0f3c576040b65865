"""Read-only views of the queues and worker heartbeats that Redis holds."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from queue_server.keys import Keys


@dataclass(frozen=True)
class QueueDepth:
    """One task key's queue: runs due now and runs due later, and who serves it."""

    task_key: str
    due_now: int
    due_later: int
    workers: int

    @property
    def total(self) -> int:
        return self.due_now + self.due_later


@dataclass(frozen=True)
class WorkerHeartbeat:
    """One worker process as its heartbeat key describes it."""

    worker_id: str
    host: str
    pid: int | None
    task_keys: list[str]
    runs: int
    beat_at: str
    seconds_left: float
    raw: dict[str, Any] = field(default_factory=dict)


async def read_workers(client: Any, keys: Keys) -> list[WorkerHeartbeat]:
    """Return every worker with a live heartbeat, sorted by worker id."""
    heartbeats = []
    async for key in client.scan_iter(match=keys.worker_pattern, count=500):
        raw = await client.get(key)
        ttl_ms = await client.pttl(key)
        if raw is None:
            continue
        heartbeats.append(_parse_heartbeat(_text(key), raw, ttl_ms, keys))
    return sorted(heartbeats, key=lambda beat: beat.worker_id)


def _parse_heartbeat(key: str, raw: bytes | str, ttl_ms: int, keys: Keys) -> WorkerHeartbeat:
    worker_id = key.removeprefix(keys.worker(""))
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    runs = data.get("runs", [])
    return WorkerHeartbeat(
        worker_id=str(data.get("worker_id", worker_id)),
        host=str(data.get("host", "?")),
        pid=data.get("pid"),
        task_keys=[str(task_key) for task_key in data.get("task_keys") or []],
        runs=len(runs) if isinstance(runs, list | dict) else int(runs or 0),
        beat_at=str(data.get("beat_at", "")),
        seconds_left=max(ttl_ms, 0) / 1000,
        raw=data,
    )


async def read_queues(client: Any, keys: Keys) -> list[QueueDepth]:
    """Return the depth of every task key's queue, with the number of workers serving it.

    A worker whose heartbeat lists ``*`` as a task key counts for every queue.
    """
    workers = await read_workers(client, keys)
    now_ms = int(time.time() * 1000)
    prefix = keys.queue("")
    queues = []
    async for key in client.scan_iter(match=keys.queue_pattern, count=500):
        name = _text(key)
        if await client.type(key) not in (b"zset", "zset"):
            continue
        task_key = name.removeprefix(prefix)
        due_now = await client.zcount(key, "-inf", now_ms)
        due_later = await client.zcount(key, f"({now_ms}", "+inf")
        serving = sum(1 for worker in workers if _serves(worker, task_key))
        queues.append(QueueDepth(task_key, due_now, due_later, serving))
    return sorted(queues, key=lambda queue: queue.task_key)


def _serves(worker: WorkerHeartbeat, task_key: str) -> bool:
    return "*" in worker.task_keys or task_key in worker.task_keys


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
