"""The request consumer keeps serving across a Redis restart and a read-only spell."""

from __future__ import annotations

import asyncio
import logging

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


async def test_consumer_waits_out_read_only_replica(sqlite_url, key_prefix, caplog):
    caplog.set_level(logging.WARNING, logger="queue_server")
    primary = RedisServer().start()
    replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    settings = stack_settings(replica.url, sqlite_url, key_prefix)
    try:
        async with running_stack(settings, start=False, create_group=False) as stack:
            stack.start_consumer()
            rejected = False
            for _ in range(1200):
                rejected = any(
                    "read only replica" in record.getMessage() for record in caplog.records
                )
                if rejected:
                    break
                await asyncio.sleep(0.05)
            still_serving = not stack.task.done()

            # Promote the replica, as a failover would, and the consumer serves again.
            await stack.redis.execute_command("REPLICAOF", "NO", "ONE")
            await send(stack.redis, stack.keys, request_body("ping", {}, "client-promoted"))
            [answer] = await replies(stack.redis, stack.keys, "client-promoted", 1)
    finally:
        replica.stop()
        primary.stop()

    assert rejected
    assert still_serving
    assert answer.ok
