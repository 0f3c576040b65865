"""The transport client against a real Redis and a small responder loop written here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from queue_server.keys import Keys
from queue_server.transport_client import (
    ClientThread,
    InvalidRequestError,
    QueueFullServiceError,
    RequestTimeoutError,
    ServiceClient,
)

pytestmark = pytest.mark.integration

Answer = Callable[[dict[str, Any], int], dict[str, Any] | None]


class Responder:
    """Reads the request stream and pushes the reply that `answer` builds (None: stay silent)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, answer: Answer) -> None:
        self.redis = redis
        self.keys = keys
        self.answer = answer
        self.seen: list[dict[str, Any]] = []

    async def run(self) -> None:
        last_id = "0-0"
        while True:
            entries = await self.redis.xread({self.keys.requests: last_id}, block=100)
            for _, messages in entries:
                for entry_id, fields in messages:
                    last_id = entry_id
                    request = json.loads(fields[b"body"])
                    self.seen.append(request)
                    request_id = request["request_id"]
                    copies = sum(1 for seen in self.seen if seen["request_id"] == request_id)
                    reply = self.answer(request, copies)
                    if reply is not None:
                        reply["request_id"] = request["request_id"]
                        await self.redis.lpush(
                            self.keys.reply(request["client_id"]), json.dumps(reply)
                        )


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(clean_redis)
    yield client
    await client.aclose()


async def start(redis: aioredis.Redis, answer: Answer, resend_after: float = 5.0):
    keys = Keys("tgclient")
    responder = Responder(redis, keys, answer)
    task = asyncio.create_task(responder.run())
    client = ServiceClient(redis, keys, request_timeout=resend_after)
    await client.start()
    return client, responder, task


async def stop(client: ServiceClient, task: asyncio.Task) -> None:
    task.cancel()
    await client.close()


async def test_request_returns_result(redis: aioredis.Redis) -> None:
    client, responder, task = await start(
        redis, lambda request, _: {"ok": True, "result": {"echo": request["args"]}}
    )
    assert await client.request("ping", {"n": 1}) == {"echo": {"n": 1}}
    assert responder.seen[0]["op"] == "ping"
    assert responder.seen[0]["v"] == 1
    assert responder.seen[0]["client_id"] == client.client_id
    await stop(client, task)


async def test_error_reply_raises_typed_error(redis: aioredis.Redis) -> None:
    def answer(request: dict[str, Any], _: int) -> dict[str, Any]:
        code = request["args"]["code"]
        return {"ok": False, "error": {"code": code, "message": "no", "field": "args.x"}}

    client, _, task = await start(redis, answer)
    with pytest.raises(InvalidRequestError) as raised:
        await client.request("ping", {"code": "invalid_request"})
    assert raised.value.field == "args.x"
    with pytest.raises(QueueFullServiceError):
        await client.request("ping", {"code": "queue_full"})
    await stop(client, task)


async def test_unanswered_request_is_resent_unchanged(redis: aioredis.Redis) -> None:
    def answer(request: dict[str, Any], copies: int) -> dict[str, Any] | None:
        return {"ok": True, "result": copies} if copies == 2 else None

    client, responder, task = await start(redis, answer, resend_after=0.3)
    assert await client.request("ping", {}) == 2
    assert len(responder.seen) == 2
    assert responder.seen[0] == responder.seen[1]
    await stop(client, task)


async def test_overall_timeout_raises(redis: aioredis.Redis) -> None:
    client, _, task = await start(redis, lambda request, copies: None, resend_after=0.2)
    with pytest.raises(RequestTimeoutError):
        await client.request("ping", {}, timeout=0.5)
    await stop(client, task)


async def test_pipelined_requests_keep_order(redis: aioredis.Redis) -> None:
    def answer(request: dict[str, Any], _: int) -> dict[str, Any]:
        item = request["args"]["item"]
        if item == 3:
            return {"ok": False, "error": {"code": "invalid_request", "message": "three"}}
        return {"ok": True, "result": item * 10}

    client, _, task = await start(redis, answer)
    results = await client.request_many("ping", [{"item": item} for item in range(6)])
    assert results[:3] == [0, 10, 20]
    assert isinstance(results[3], InvalidRequestError)
    assert results[4:] == [40, 50]
    await stop(client, task)


async def test_stray_replies_are_ignored(redis: aioredis.Redis) -> None:
    client, _, task = await start(redis, lambda request, _: {"ok": True, "result": "fine"})
    reply_key = Keys("tgclient").reply(client.client_id)
    await redis.lpush(reply_key, b"not json")
    await redis.lpush(reply_key, json.dumps({"request_id": None, "ok": False}))
    assert await client.request("ping", {}) == "fine"
    await stop(client, task)


def test_client_thread_runs_coroutines_from_sync_code() -> None:
    thread = ClientThread.current()
    assert ClientThread.current() is thread

    async def double(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    assert thread.run(lambda: double(21)) == 42
