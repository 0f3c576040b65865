"""Replies of one batch: one LPUSH per client, with the list as one LPUSH per reply leaves it."""

from __future__ import annotations

from uuid import uuid4

import pytest

from queue_server.keys import Keys
from queue_server.protocol import Reply
from queue_server.redis_conn import connect
from queue_server.transport.server import REPLY_LIST_TTL_SECONDS, push_replies

pytestmark = pytest.mark.integration


async def test_replies_are_grouped_by_client(redis_url, key_prefix):
    keys = Keys(key_prefix)
    first, second, third, other = (
        Reply(request_id=uuid4(), ok=True, result={"n": n}) for n in range(4)
    )
    redis = connect(redis_url)
    try:
        await push_replies(
            redis,
            keys,
            [("client-a", first), ("client-b", other), ("client-a", second), ("client-a", third)],
        )
        listed_a = await redis.lrange(keys.reply("client-a"), 0, -1)
        listed_b = await redis.lrange(keys.reply("client-b"), 0, -1)
        ttl_a = await redis.ttl(keys.reply("client-a"))
        ttl_b = await redis.ttl(keys.reply("client-b"))
    finally:
        await redis.delete(keys.reply("client-a"), keys.reply("client-b"))
        await redis.aclose()

    # LPUSH puts each new reply at the head, so the newest comes first.
    assert [Reply.model_validate_json(item).result["n"] for item in listed_a] == [2, 1, 0]
    assert [Reply.model_validate_json(item).result["n"] for item in listed_b] == [3]
    assert 0 < ttl_a <= REPLY_LIST_TTL_SECONDS
    assert 0 < ttl_b <= REPLY_LIST_TTL_SECONDS
