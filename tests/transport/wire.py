"""A bare sender for transport tests: XADD a request, BLPOP its reply from Redis."""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID, uuid4

import redis.asyncio as aioredis

from queue_server.keys import Keys
from queue_server.protocol import Reply

REPLY_WAIT_SECONDS = 60.0


def request_body(op: str, args: dict[str, Any], client_id: str, request_id: UUID | None = None):
    return {
        "v": 1,
        "request_id": str(request_id or uuid4()),
        "client_id": client_id,
        "op": op,
        "args": args,
    }


async def send(redis: aioredis.Redis, keys: Keys, body: dict[str, Any] | bytes) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    await redis.xadd(keys.requests, {"body": raw})


async def replies(
    redis: aioredis.Redis, keys: Keys, client_id: str, count: int,
    wait_seconds: float = REPLY_WAIT_SECONDS,
) -> list[Reply]:
    """Collect `count` replies for one client, or fail after a generous timeout."""
    found: list[Reply] = []
    deadline = time.monotonic() + wait_seconds
    while len(found) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(found)} of {count} replies for {client_id}")
        item = await redis.blpop([keys.reply(client_id)], timeout=max(1, min(5, int(left))))
        if item is not None:
            found.append(Reply.model_validate_json(item[1]))
    return found


def create_task_run_args(task_key: str = "tests.add", **run: Any) -> dict[str, Any]:
    return {
        "run": {
            "id": str(run.pop("id", uuid4())),
            "task_key": task_key,
            "parameters": {"serializer": "json", "value": {"x": 1}},
            **run,
        },
        "transition_id": str(uuid4()),
    }
