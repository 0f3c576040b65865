"""The operator HTTP API over a real service on SQLite and PostgreSQL, with a bearer token."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import pytest

from queue_server.http_api import create_app
from queue_server.loops.reconciler import Reconciler
from tests.loops.runs import apply, claim, create_run
from tests.transport.stack import running_stack, stack_settings
from tests.transport.wire import create_task_run_args

pytestmark = pytest.mark.integration

TOKEN = "operator-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(clean_redis, database_url, key_prefix):
    settings = stack_settings(clean_redis, database_url, key_prefix, api_token=TOKEN)
    async with running_stack(settings, start=False) as stack:
        app = create_app(stack.service, stack.redis, stack.post_commit, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client, stack


async def test_token_required(api):
    client, _ = api

    missing = await client.get("/runs")
    wrong = await client.get("/runs", headers={"Authorization": "Bearer nope"})
    right = await client.get("/runs", headers=AUTH)
    health = await client.get("/health")

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert health.status_code == 200
    assert health.json()["redis"] is True


async def test_bad_state_type_names_field(api):
    client, stack = api
    run_id, _ = await create_run(stack)

    response = await client.post(
        f"/runs/{run_id}/state", json={"state": {"type": "SLEEPING"}}, headers=AUTH
    )

    assert response.status_code == 422
    assert response.json()["field"] == "state.type"


async def test_bad_state_name_names_field(api):
    client, stack = api
    run_id, _ = await create_run(stack)

    response = await client.post(
        f"/runs/{run_id}/state",
        json={"state": {"type": "RUNNING", "name": "AwaitingRetry"}},
        headers=AUTH,
    )
    states = await stack.service.read_states(run_id)

    assert response.status_code == 422
    assert response.json()["field"] == "state.name"
    assert len(states) == 1


async def test_bad_filter_state_names_field(api):
    client, _ = api

    response = await client.get("/runs", params={"state": "BOGUS"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["field"] == "state"


async def test_runs_filters(api):
    client, stack = api
    red = await apply(stack, "create_task_run", create_task_run_args("tests.a", tags=["red"]))
    plain = await apply(stack, "create_task_run", create_task_run_args("tests.a"))
    other = await apply(stack, "create_task_run", create_task_run_args("tests.b", tags=["red"]))
    red_id, plain_id, other_id = (reply.result["run"]["id"] for reply in (red, plain, other))
    cancelled = await client.post(f"/runs/{plain_id}/cancel", headers=AUTH)

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {run["id"] for run in response.json()}

    by_key = ids(await client.get("/runs", params={"task_key": "tests.a"}, headers=AUTH))
    by_tag = ids(await client.get("/runs", params={"tag": "red"}, headers=AUTH))
    by_state = ids(await client.get("/runs", params={"state": "CANCELLED"}, headers=AUTH))
    scheduled = ids(await client.get(
        "/runs", params={"state": "SCHEDULED", "task_key": "tests.a"}, headers=AUTH
    ))

    assert cancelled.status_code == 200
    assert cancelled.json()["state"]["type"] == "CANCELLED"
    assert by_key == {red_id, plain_id}
    assert by_tag == {red_id, other_id}
    assert by_state == {plain_id}
    assert scheduled == {red_id}


async def test_run_history_and_decisions(api):
    client, stack = api
    run_id, state_id = await create_run(stack)
    await claim(stack, run_id, state_id, "worker-http", start=True)

    run = await client.get(f"/runs/{run_id}", headers=AUTH)
    states = await client.get(f"/runs/{run_id}/states", headers=AUTH)
    decisions = await client.get(f"/runs/{run_id}/decisions", headers=AUTH)
    missing = await client.get(f"/runs/{uuid4()}", headers=AUTH)

    assert run.json()["state"]["type"] == "RUNNING"
    assert [state["type"] for state in states.json()] == ["SCHEDULED", "PENDING", "RUNNING"]
    assert [decision["status"] for decision in decisions.json()] == ["ACCEPT"] * 3
    assert missing.status_code == 404


async def test_forced_scheduled_state_is_queued(api):
    client, stack = api
    run_id, state_id = await create_run(stack)
    await claim(stack, run_id, state_id, "worker-http", start=True)

    response = await client.post(
        f"/runs/{run_id}/state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}},
        headers=AUTH,
    )
    body = response.json()
    await Reconciler(stack.redis, stack.service, stack.queues, stack.settings).reconcile_once()
    queued = await stack.redis.zrange(stack.keys.queue("tests.add"), 0, -1)
    holders = await stack.service.workers_holding_runs()

    assert response.status_code == 200, body
    assert body["status"] == "ACCEPT"
    assert body["state"]["name"] == "AwaitingRetry"
    assert f"{run_id}:{body['state']['id']}".encode() in queued
    assert "worker-http" not in holders


async def test_queues_and_workers(api):
    client, stack = api
    for _ in range(2):
        await create_run(stack, task_key="tests.q")
    beat = {"worker_id": "w-1", "host": "h", "pid": 1, "task_keys": ["tests.q"], "runs": []}
    await stack.redis.set(stack.keys.worker("w-1"), json.dumps(beat), px=60_000)

    queues = (await client.get("/queues", headers=AUTH)).json()
    workers = (await client.get("/workers", headers=AUTH)).json()

    assert [(q["task_key"], q["depth"], q["scheduled_in_sql"]) for q in queues] == [
        ("tests.q", 2, 2)
    ]
    assert queues[0]["oldest_due"] is not None
    assert [worker["worker_id"] for worker in workers] == ["w-1"]
    assert 0 < workers[0]["expires_in"] <= 60


async def test_concurrency_limits_crud(api):
    client, _ = api

    created = await client.post(
        "/concurrency-limits", json={"tag": "db", "limit": 2}, headers=AUTH
    )
    negative = await client.post(
        "/concurrency-limits", json={"tag": "db", "limit": -1}, headers=AUTH
    )
    read = await client.get("/concurrency-limits/db", headers=AUTH)
    listed = await client.get("/concurrency-limits", headers=AUTH)
    reset = await client.post("/concurrency-limits/db/reset", headers=AUTH)
    deleted = await client.delete("/concurrency-limits/db", headers=AUTH)
    gone = await client.get("/concurrency-limits/db", headers=AUTH)

    assert created.status_code == 200
    assert created.json()["limit"] == 2
    assert negative.status_code == 422
    assert negative.json()["field"] == "limit"
    assert read.json()["tag"] == "db"
    assert [limit["tag"] for limit in listed.json()] == ["db"]
    assert reset.json()["holders"] == []
    assert deleted.status_code == 200
    assert gone.status_code == 404
