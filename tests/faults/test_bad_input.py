"""Bad input from callers, operators and Redis itself: a clear error, nothing lost or half-written.

Each test runs a real service process on a private Redis and checks both the error the
user sees and what the database and Redis hold afterwards.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.faults import tasks
from tests.faults.harness import Stack, executions, wait_until
from tests.servers import free_port
from workers import ArgumentsTooLarge, QueueFullError, task
from workers.errors import TaskDefinitionError

pytestmark = pytest.mark.faults


def run_count(stack: Stack) -> int:
    return stack.sql("SELECT count(*) FROM task_runs")[0][0]


def stream_length(stack: Stack) -> int:
    with stack.redis() as connection:
        return connection.xlen(f"{stack.key_prefix}:requests")


def raw_create(stack: Stack, **changes: object) -> object:
    """Send one create_task_run request as a client would, with `changes` to the run."""
    run = {
        "id": str(uuid.uuid4()),
        "task_key": tasks.takes_one_argument.task_key,
        "name": "takes_one_argument",
        "parameters": {"serializer": "json", "value": {"log_path": "/dev/null", "label": "raw"}},
    }
    run.update(changes)
    client = stack.client()
    return client.request_many(
        "create_task_run", [{"run": run, "transition_id": str(uuid.uuid4())}]
    )[0]


# -- jobs a worker cannot read ---------------------------------------------------------


def corrupt_job(stack: Stack, run_id: uuid.UUID, change) -> None:
    """Rewrite the arq job of a queued run in Redis with `change` applied to its kwargs."""
    with stack.redis() as connection:
        names = list(connection.scan_iter(match=f"arq:job:{run_id}:*"))
        assert len(names) == 1
        job = json.loads(connection.get(names[0]))
        change(job["k"])
        connection.set(names[0], json.dumps(job), keepttl=True)


def test_unreadable_job_fails_run(stack: Stack, execution_log) -> None:
    stack.start_service()
    client = stack.client()
    missing = tasks.takes_one_argument.apply_async(
        (str(execution_log), "missing"), client=client
    )
    wrong = tasks.takes_one_argument.apply_async((str(execution_log), "wrong"), client=client)
    corrupt_job(stack, missing.run_id, lambda kwargs: kwargs.pop("parameters"))
    corrupt_job(
        stack,
        wrong.run_id,
        lambda kwargs: kwargs.update(parameters={"serializer": "json", "value": {"x": 1}}),
    )

    stack.start_worker(concurrency=2)
    final = stack.wait_all_final(2, seconds=120)

    assert final[str(missing.run_id)][0] == "FAILED"
    assert final[str(wrong.run_id)][0] == "FAILED"
    messages = dict(
        (str(uuid.UUID(str(run_id))), message)
        for run_id, message in stack.sql(
            "SELECT task_run_id, message FROM task_run_states WHERE type = 'FAILED'"
        )
    )
    assert messages[str(missing.run_id)] == "the job's parameters are missing or unreadable"
    assert messages[str(wrong.run_id)].startswith("unreadable parameters:")
    assert "log_path" in messages[str(wrong.run_id)]
    # Neither run was deleted, and the function never ran.
    assert run_count(stack) == 2
    assert executions(execution_log) == {}


# -- submissions rejected before anything is written ----------------------------------


def test_oversized_arguments_rejected(stack: Stack, execution_log) -> None:
    stack.start_service()
    client = stack.client(max_argument_bytes=1000)
    with pytest.raises(ArgumentsTooLarge) as caught:
        tasks.takes_one_argument.apply_async((str(execution_log), "x" * 5000), client=client)
    assert caught.value.argument == "label"
    assert caught.value.limit == 1000
    assert caught.value.size > 5000
    assert stream_length(stack) == 0
    assert run_count(stack) == 0


def test_service_rejects_oversized_parameters(stack: Stack) -> None:
    stack.start_service(TASKGATE_MAX_ARGUMENT_BYTES="1000")
    stack.client()
    reply = raw_create(
        stack, parameters={"serializer": "json", "value": {"log_path": "p", "label": "x" * 5000}}
    )
    assert reply.code == "invalid_request"
    assert reply.field == "args.run.parameters"
    assert run_count(stack) == 0


def test_long_cache_key_rejected(stack: Stack) -> None:
    stack.start_service()
    client = stack.client(max_cache_key_length=100)
    with pytest.raises(ValueError, match="cache key of 101 characters"):
        tasks.with_cache_key_length.apply_async((101,), client=client)
    assert stream_length(stack) == 0

    # A client that skips the check meets the same limit at the service.
    stack.client()
    reply = raw_create(stack, cache_key="k" * 2001)
    assert reply.code == "invalid_request"
    assert reply.field == "args.run.cache_key"
    assert run_count(stack) == 0
    assert stack.sql("SELECT count(*) FROM task_run_states")[0][0] == 0


def test_long_retry_delay_list_rejected(stack: Stack) -> None:
    with pytest.raises(TaskDefinitionError, match="51 entries; at most 50"):

        @task(retries=51, retry_delay_seconds=[1.0] * 51)
        def too_many_delays() -> None:
            """Never registered: its delay list is longer than the limit."""

    stack.start_service()
    reply = raw_create(stack, empirical_policy={"retries": 51, "retry_delay": [1.0] * 51})
    assert reply.code == "invalid_request"
    assert reply.field.startswith("args.run.empirical_policy.retry_delay")
    assert "at most 50" in reply.message
    assert run_count(stack) == 0


def test_full_queue_raises_at_delay(stack: Stack, execution_log) -> None:
    stack.start_service(TASKGATE_MAX_QUEUED_PER_TASK_KEY="5")
    client = stack.client()
    accepted = [
        tasks.takes_one_argument.apply_async((str(execution_log), f"q{index}"), client=client)
        for index in range(5)
    ]
    assert len(accepted) == 5

    with pytest.raises(QueueFullError) as caught:
        tasks.takes_one_argument.apply_async((str(execution_log), "overflow"), client=client)
    assert caught.value.task_key == tasks.takes_one_argument.task_key
    assert "TASKGATE_MAX_QUEUED_PER_TASK_KEY=5" in str(caught.value)
    with pytest.raises(QueueFullError):
        tasks.takes_one_argument.map(
            [str(execution_log)] * 2, ["m0", "m1"], client=client
        )
    assert run_count(stack) == 5

    # Once a worker drains the queue, submissions are accepted again.
    stack.start_worker(concurrency=2)
    stack.wait_all_final(5, seconds=120)
    later = tasks.takes_one_argument.apply_async((str(execution_log), "later"), client=client)
    assert later.result(timeout=120) == "later"


# -- orchestration that refuses a run ---------------------------------------------------


def test_zero_limit_fails_run(stack: Stack, execution_log) -> None:
    port = free_port()
    stack.start_service(http_port=port)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/concurrency-limits",
        json={"tag": "faults-closed", "limit": 0},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    stack.start_worker(concurrency=2)
    future = tasks.behind_closed_limit.apply_async(
        (str(execution_log), "closed"), client=stack.client()
    )
    final = stack.wait_all_final(1, seconds=120)

    assert final[str(future.run_id)] == ("FAILED", "Failed")
    history = stack.state_history()[str(future.run_id)]
    assert history == [("SCHEDULED", "Scheduled"), ("PENDING", "Pending"), ("FAILED", "Failed")]
    message = stack.sql("SELECT message FROM task_run_states WHERE type = 'FAILED'")[0][0]
    assert message.startswith("Running was aborted:")
    assert "faults-closed" in message
    assert stack.slot_holders() == []
    assert executions(execution_log) == {}


# -- the operator HTTP API ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"type": "FINISHED"}, "state.type"),
        ({"type": "completed"}, "state.type"),
        ({"type": "COMPLETED", "name": ["Done"]}, "state.name"),
        ({"type": "COMPLETED", "colour": "green"}, "state.colour"),
        ({"name": "Completed"}, "state.type"),
    ],
)
def test_http_rejects_invalid_state(stack: Stack, execution_log, state, field) -> None:
    port = free_port()
    stack.start_service(http_port=port)
    future = tasks.takes_one_argument.apply_async(
        (str(execution_log), "held"), client=stack.client()
    )

    answer = httpx.post(
        f"http://127.0.0.1:{port}/runs/{future.run_id}/state", json={"state": state}, timeout=30
    )

    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert field in answer.json()["message"]
    assert stack.state_history()[str(future.run_id)] == [("SCHEDULED", "Scheduled")]


def test_http_unknown_run_not_found(stack: Stack) -> None:
    port = free_port()
    stack.start_service(http_port=port)
    missing = uuid.uuid4()
    answer = httpx.post(
        f"http://127.0.0.1:{port}/runs/{missing}/state",
        json={"state": {"type": "COMPLETED"}},
        timeout=30,
    )
    assert answer.status_code == 404
    assert str(missing) in answer.json()["message"]
    wait_until(lambda: run_count(stack) == 0, 5, "no run to appear")
