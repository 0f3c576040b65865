"""The request consumer keeps serving across a Redis restart that lost the consumer group."""

from __future__ import annotations

import pytest
from redis.exceptions import RedisError

from tests.servers import RedisServer
from tests.transport.stack import running_stack, stack_settings
from tests.transport.wire import replies, request_body, send

pytestmark = pytest.mark.integration


async def test_consumer_serves_after_redis_restart(sqlite_url, key_prefix):
    server = RedisServer().start()
    settings = stack_settings(server.url, sqlite_url, key_prefix)
    try:
        async with running_stack(settings) as stack:
            await send(stack.redis, stack.keys, request_body("ping", {}, "client-restart"))
            [before] = await replies(stack.redis, stack.keys, "client-restart", 1)

            server.restart()  # no persistence: the stream and its group are gone
            for _ in range(100):
                try:
                    await send(stack.redis, stack.keys, request_body("ping", {}, "client-restart"))
                    break
                except RedisError:
                    continue
            [after] = await replies(stack.redis, stack.keys, "client-restart", 1)
            groups = await stack.redis.xinfo_groups(stack.keys.requests)
    finally:
        server.stop()

    assert before.ok
    assert after.ok
    assert [group["name"] for group in groups] == [b"taskgate-service"]
