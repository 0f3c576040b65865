"""Committed state events on the events channel, and final runs cached with a TTL."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from policy.runs import TaskRunPolicy
from policy.states import Completed, StateType
from queue_server.events import EventPublisher
from queue_server.keys import Keys
from queue_server.protocol import StateEvent, TaskRunView
from queue_server.redis_conn import connect

pytestmark = pytest.mark.integration


async def test_publish_caches_results_and_sends_events(clean_redis, key_prefix):
    redis = connect(clean_redis)
    keys = Keys(key_prefix)
    publisher = EventPublisher(redis, keys, result_cache_ttl=120)
    run_id = uuid4()
    view = TaskRunView(
        id=run_id, name="add", task_key="tests.add", tags=[], is_background=True,
        empirical_policy=TaskRunPolicy(), run_count=1, state=None,
    )
    event = StateEvent(
        run_id=run_id, task_key="tests.add", state_id=uuid4(),
        state_type=StateType.COMPLETED, state_name="Completed", timestamp=datetime.now(UTC),
    )
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(keys.events)
        await pubsub.get_message(timeout=5)  # the subscribe confirmation

        await publisher.publish([event], [view])

        message = None
        for _ in range(100):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        ttl = await redis.ttl(keys.result(run_id))
        cached = await publisher.cached_result(run_id)
        missing = await publisher.cached_result(uuid4())
    finally:
        await pubsub.aclose()
        await redis.aclose()

    assert message is not None
    assert StateEvent.model_validate_json(message["data"]) == event
    assert 0 < ttl <= 120
    assert cached == view
    assert missing is None


def _completed_view(run_id, data) -> TaskRunView:
    return TaskRunView(
        id=run_id, name="add", task_key="tests.add", tags=[], is_background=True,
        empirical_policy=TaskRunPolicy(), run_count=1, state=Completed(data=data),
    )


async def test_unpersisted_value_survives_service_cache_write(clean_redis, key_prefix):
    redis = connect(clean_redis)
    keys = Keys(key_prefix)
    publisher = EventPublisher(redis, keys, result_cache_ttl=120)
    run_id = uuid4()
    # The worker caches the value of an unpersisted result itself, and its write can
    # land before the service's view of the same run, which carries only the marker.
    value = {"type": "result", "serializer": "json", "value": 42}
    with_value = _completed_view(run_id, value)
    try:
        await redis.set(keys.result(run_id), with_value.model_dump_json(), ex=120)
        await publisher.publish([], [_completed_view(run_id, {"type": "unpersisted"})])
        cached = await publisher.cached_result(run_id)
    finally:
        await redis.aclose()

    assert cached is not None
    assert cached.state.data == value


async def test_persisted_view_replaces_cached_view(clean_redis, key_prefix):
    redis = connect(clean_redis)
    keys = Keys(key_prefix)
    publisher = EventPublisher(redis, keys, result_cache_ttl=120)
    run_id = uuid4()
    result = {"type": "result", "serializer": "json", "value": 7}
    try:
        await redis.set(keys.result(run_id), b"stale", ex=120)
        await publisher.publish([], [_completed_view(run_id, result)])
        cached = await publisher.cached_result(run_id)
    finally:
        await redis.aclose()

    assert cached is not None
    assert cached.state.data == result
