"""Requests in, replies out, effects in Redis only after the commit, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID, uuid4

import pytest
from sqlalchemy import delete

from queue_server.db.models import FlowRunRow
from queue_server.protocol import StateEvent
from tests.transport.stack import acked, running_stack, stack_settings
from tests.transport.wire import create_task_run_args, replies, request_body, send

pytestmark = pytest.mark.integration

# Published by a test after the last batch is acknowledged: pub/sub keeps order, so
# the listener has seen every event of that batch once it reads this.
END_MARKER = b"end-of-test"


async def listen_events(stack, into: list, checked: list) -> None:
    """Record every event, and check at once that SQL already contains the announced state."""
    pubsub = stack.redis.pubsub()
    await pubsub.subscribe(stack.keys.events)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            if message["data"] == END_MARKER:
                return
            event = StateEvent.model_validate_json(message["data"])
            states = await stack.service.read_states(event.run_id)
            checked.append(event.state_id in {state.id for state in states})
            into.append(event)
    finally:
        await pubsub.aclose()


async def test_round_trip_creates_and_enqueues(clean_redis, database_url, key_prefix):
    settings = stack_settings(clean_redis, database_url, key_prefix)
    async with running_stack(settings) as stack:
        events: list[StateEvent] = []
        checked: list[bool] = []
        listener = asyncio.create_task(listen_events(stack, events, checked))
        await asyncio.sleep(0.2)  # let the subscription register before anything is sent
        run_ids = [uuid4() for _ in range(5)]
        for run_id in run_ids:
            await send(stack.redis, stack.keys, request_body(
                "create_task_run", create_task_run_args(id=run_id), "client-a"
            ))

        answers = await replies(stack.redis, stack.keys, "client-a", 5)
        await acked(stack)
        await stack.redis.publish(stack.keys.events, END_MARKER)
        await asyncio.wait_for(listener, timeout=60)

    assert all(answer.ok for answer in answers)
    assert {UUID(answer.result["run"]["id"]) for answer in answers} == set(run_ids)
    assert all(answer.result["orchestration"]["status"] == "ACCEPT" for answer in answers)
    assert {event.run_id for event in events} == set(run_ids)
    assert all(checked)
    async with running_stack(settings, start=False) as stack:
        queued = await stack.redis.zrange(stack.keys.queue("tests.add"), 0, -1)
        scheduled_count = len(await stack.service.scheduled_background_jobs())
    assert len(queued) == 5
    assert scheduled_count == 5
    assert {UUID(item.decode().split(":")[0]) for item in queued} == set(run_ids)


async def test_failed_request_in_batch_has_no_effects(clean_redis, database_url, key_prefix):
    settings = stack_settings(clean_redis, database_url, key_prefix)
    first, missing = uuid4(), uuid4()
    async with running_stack(settings, start=False) as stack:
        await send(stack.redis, stack.keys, request_body(
            "create_task_run", create_task_run_args(id=first), "client-b"
        ))
        stack.start_consumer()
        [created] = await replies(stack.redis, stack.keys, "client-b", 1)
        await stack.stop_consumer()

        # One batch: a good create, a conflicting create and a proposal for an unknown run.
        good = uuid4()
        conflicting = create_task_run_args(id=first, task_key="tests.other")
        unknown = {
            "run_id": str(missing),
            "state": {"type": "RUNNING"},
            "transition_id": str(uuid4()),
        }
        for body in (
            request_body("create_task_run", create_task_run_args(id=good), "client-b"),
            request_body("create_task_run", conflicting, "client-b"),
            request_body("propose_state", unknown, "client-b"),
        ):
            await send(stack.redis, stack.keys, body)
        stack.start_consumer()
        answers = await replies(stack.redis, stack.keys, "client-b", 3)
        await acked(stack)  # replies go out before the enqueue, the XACK after it
        queued = await stack.redis.zrange(stack.keys.queue("tests.add"), 0, -1)
        other = await stack.redis.zcard(stack.keys.queue("tests.other"))

    assert created.ok
    by_ok = sorted(answers, key=lambda reply: reply.ok)
    assert [reply.ok for reply in by_ok] == [False, False, True]
    assert {reply.error.code for reply in by_ok[:2]} == {"conflict", "not_found"}
    assert {UUID(item.decode().split(":")[0]) for item in queued} == {first, good}
    assert other == 0


async def test_ping_names_replica(clean_redis, sqlite_url, key_prefix):
    settings = stack_settings(clean_redis, sqlite_url, key_prefix)
    async with running_stack(settings) as stack:
        await send(stack.redis, stack.keys, request_body("ping", {}, "client-c"))
        [answer] = await replies(stack.redis, stack.keys, "client-c", 1)

    assert answer.ok
    assert answer.result["replica_id"]


async def test_entries_acknowledged_after_reply(clean_redis, sqlite_url, key_prefix):
    settings = stack_settings(clean_redis, sqlite_url, key_prefix)
    async with running_stack(settings) as stack:
        for _ in range(3):
            await send(stack.redis, stack.keys, request_body("ping", {}, "client-d"))
        await replies(stack.redis, stack.keys, "client-d", 3)
        pending = await acked(stack)
        ttl = await stack.redis.ttl(stack.keys.reply("client-d"))

    assert pending["pending"] == 0
    assert ttl == -2 or 0 < ttl <= 300


async def test_rule_error_in_batch_is_not_published(clean_redis, database_url, key_prefix):
    settings = stack_settings(clean_redis, database_url, key_prefix)
    flow_run_id, broken, healthy = uuid4(), uuid4(), uuid4()
    async with running_stack(settings, start=False) as stack:
        flow = {"run": {"id": str(flow_run_id), "flow_name": "nightly"},
                "state": {"type": "RUNNING"}, "transition_id": str(uuid4())}
        await send(stack.redis, stack.keys, request_body("create_flow_run", flow, "client-e"))
        await send(stack.redis, stack.keys, request_body(
            "create_task_run", create_task_run_args(id=broken, flow_run_id=str(flow_run_id)),
            "client-e",
        ))
        stack.start_consumer()
        setup = await replies(stack.redis, stack.keys, "client-e", 2)
        await stack.stop_consumer()
        scheduled_id = next(
            reply.result["orchestration"]["state"]["id"]
            for reply in setup if reply.result["run"]["id"] == str(broken)
        )
        # Without its flow run, the tracker rule raises while starting the broken run.
        async with stack.database.write_session() as session:
            await session.execute(delete(FlowRunRow).where(FlowRunRow.id == flow_run_id))
            await session.commit()
        await stack.redis.delete(stack.keys.queue("tests.add"))

        events: list[StateEvent] = []
        checked: list[bool] = []
        listener = asyncio.create_task(listen_events(stack, events, checked))
        await asyncio.sleep(0.2)  # let the subscription register before anything is sent
        claim = {
            "run_id": str(broken),
            "claimed_state_id": scheduled_id,
            "worker_id": "worker-e",
            "claim_transition_id": str(uuid4()),
            "start_transition_id": str(uuid4()),
        }
        async with stack.redis.pipeline(transaction=True) as pipe:
            for body in (
                request_body("claim_and_start", claim, "client-e"),
                request_body("create_task_run", create_task_run_args(id=healthy), "client-e"),
            ):
                pipe.xadd(stack.keys.requests, {"body": json.dumps(body)})
            await pipe.execute()
        stack.start_consumer()
        answers = await replies(stack.redis, stack.keys, "client-e", 2)
        await acked(stack)
        await stack.redis.publish(stack.keys.events, END_MARKER)
        await asyncio.wait_for(listener, timeout=60)
        queued = await stack.redis.zrange(stack.keys.queue("tests.add"), 0, -1)

    started = next(a for a in answers if a.result.get("claim") is not None)
    assert started.result["start"]["status"] == "ABORT"
    assert {(event.run_id, event.state_type.value) for event in events} == {
        (broken, "PENDING"), (healthy, "SCHEDULED"),
    }
    assert all(checked)
    assert [item.decode().split(":")[0] for item in queued] == [str(healthy)]
