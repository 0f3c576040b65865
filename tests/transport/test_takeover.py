"""Taking over a dead consumer's pending entries, and dropping copies delivered too often."""

from __future__ import annotations

import logging

import pytest

from queue_server.keys import CONSUMER_GROUP
from queue_server.transport.server import MAX_DELIVERIES
from tests.transport.stack import acked, running_stack, stack_settings
from tests.transport.wire import replies, request_body, send

pytestmark = pytest.mark.integration


async def test_takeover_replies_and_drops_worn_out(clean_redis, sqlite_url, key_prefix, caplog):
    caplog.set_level(logging.WARNING, logger="queue_server")
    settings = stack_settings(clean_redis, sqlite_url, key_prefix, claim_idle=1.0)
    worn, fresh = (request_body("ping", {}, "client-t") for _ in range(2))
    async with running_stack(settings, start=False) as stack:
        for body in (worn, fresh):
            await send(stack.redis, stack.keys, body)
        # A consumer that read both entries and died before replying.
        [(_, read)] = await stack.redis.xreadgroup(
            CONSUMER_GROUP, "dead-replica", {stack.keys.requests: ">"}, count=2
        )
        worn_id, fresh_id = (entry_id for entry_id, _ in read)
        await stack.redis.xclaim(
            stack.keys.requests, CONSUMER_GROUP, "dead-replica", 0, [worn_id],
            idle=600_000, retrycount=MAX_DELIVERIES + 5,
        )
        await stack.redis.xclaim(
            stack.keys.requests, CONSUMER_GROUP, "dead-replica", 0, [fresh_id],
            idle=600_000, retrycount=1,
        )

        stack.start_consumer()
        [answer] = await replies(stack.redis, stack.keys, "client-t", 1)
        pending = await acked(stack)
        left = await stack.redis.llen(stack.keys.reply("client-t"))

    assert str(answer.request_id) == fresh["request_id"]
    assert answer.ok
    assert pending["pending"] == 0
    assert left == 0
    assert any(worn_id.decode() in record.getMessage() for record in caplog.records)
