"""The per-task-key queues: enqueue once, wake workers, find missing jobs, report depths."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from queue_server.jobs import JobSpec, deserialize_job
from queue_server.keys import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX, JOB_FUNCTION_NAME, Keys
from queue_server.protocol import Envelope
from queue_server.queues import TaskQueues
from queue_server.redis_conn import connect

pytestmark = pytest.mark.integration


def make_job(task_key: str = "app.add", due: datetime | None = None) -> JobSpec:
    return JobSpec(
        run_id=uuid4(),
        state_id=uuid4(),
        task_key=task_key,
        due=due or datetime.now(UTC),
        parameters=Envelope(value={"x": 1}),
    )


@pytest.fixture
async def redis(clean_redis):
    client = connect(clean_redis)
    yield client
    await client.aclose()


@pytest.fixture
def queues(redis, key_prefix):
    return TaskQueues(redis, Keys(key_prefix))


async def test_enqueue_writes_job_and_entry(redis, queues, key_prefix):
    job = make_job(due=datetime.now(UTC) + timedelta(minutes=5))

    added = await queues.enqueue([job])

    assert added == 1
    score = await redis.zscore(f"{key_prefix}:queue:app.add", job.job_id)
    assert int(score) == job.due_ms
    payload = deserialize_job(await redis.get(ARQ_JOB_PREFIX + job.job_id))
    assert payload["f"] == JOB_FUNCTION_NAME
    assert payload["k"]["run_id"] == str(job.run_id)
    assert payload["k"]["state_id"] == str(job.state_id)
    assert payload["k"]["parameters"] == {"serializer": "json", "value": {"x": 1}}
    assert await redis.pttl(ARQ_JOB_PREFIX + job.job_id) > 0


async def test_enqueue_same_state_twice_is_noop(redis, queues, key_prefix):
    job = make_job()

    first = await queues.enqueue([job])
    second = await queues.enqueue([job, job])

    assert first == 1
    assert second == 0
    assert await redis.zcard(f"{key_prefix}:queue:app.add") == 1


async def test_enqueue_skips_job_in_progress(redis, queues, key_prefix):
    job = make_job()
    await redis.set(ARQ_IN_PROGRESS_PREFIX + job.job_id, b"1")

    assert await queues.enqueue([job]) == 0
    assert await redis.zcard(f"{key_prefix}:queue:app.add") == 0


async def test_enqueue_publishes_task_key_on_wake(redis, queues, key_prefix):
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{key_prefix}:wake")
    await pubsub.get_message(timeout=5)  # the subscribe confirmation

    await queues.enqueue([make_job("app.wake")])

    message = None
    for _ in range(100):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message:
            break
    await pubsub.aclose()
    assert message is not None
    assert message["data"] == b"app.wake"


async def test_missing_lists_jobs_without_entry_or_progress(redis, queues):
    queued, running, lost = make_job(), make_job(), make_job()
    await queues.enqueue([queued])
    await redis.set(ARQ_IN_PROGRESS_PREFIX + running.job_id, b"1")

    missing = await queues.missing([queued, running, lost])

    assert [job.job_id for job in missing] == [lost.job_id]


async def test_depths_per_task_key(queues):
    now = datetime.now(UTC).replace(microsecond=0)
    await queues.enqueue([
        make_job("a.first", now + timedelta(seconds=30)),
        make_job("a.first", now + timedelta(seconds=10)),
        make_job("b.second", now),
    ])

    depths = await queues.depths()

    assert [(item.task_key, item.depth) for item in depths] == [("a.first", 2), ("b.second", 1)]
    assert depths[0].oldest_due == now + timedelta(seconds=10)
    assert depths[1].oldest_due == now


async def test_enqueue_after_script_flush(redis, queues):
    await queues.enqueue([make_job()])
    await redis.script_flush()

    assert await queues.enqueue([make_job()]) == 1


async def test_enqueue_concurrently_once(redis, queues, key_prefix):
    jobs = [make_job("app.race") for _ in range(20)]

    results = await asyncio.gather(*[queues.enqueue(jobs) for _ in range(5)])

    assert sum(results) == 20
    assert await redis.zcard(f"{key_prefix}:queue:app.race") == 20
