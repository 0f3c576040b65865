"""End to end: worker processes starting, stopping, dying and meeting redelivered jobs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.e2e_helpers import TASK_MODULES_DIR, Stack, count_lines, state_names, wait_until
from workers import (
    ArgumentError,
    ArgumentsTooLarge,
    SerializationError,
    TaskRunCancelled,
    wait_all,
)

sys.path.insert(0, str(TASK_MODULES_DIR))
import e2e_tasks  # noqa: E402

pytestmark = pytest.mark.e2e


def read_records(stack: Stack, name: str) -> list[dict]:
    path = stack.home / f"{name}.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_workers_never_run_twice(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"], "--concurrency", "8")
    stack.start_worker(["e2e_tasks"], "--concurrency", "8")
    futures = e2e_tasks.count_execution.map(range(200))
    done, pending = wait_all(futures, timeout=300)
    assert pending == []
    lines = [record["line"] for record in read_records(stack, "executions")]
    assert len(lines) == 200
    assert sorted(map(int, lines)) == list(range(200))


def test_redelivered_job_after_completion_is_dropped(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    client = stack.redis()
    future = e2e_tasks.count_execution.apply_async((1,), countdown=3)
    queue = stack.keys.queue("e2e_tasks.count_execution")
    job_id = wait_until(lambda: client.zrange(queue, 0, 0), 30, what="the job to be queued")[0]
    payload = client.get(b"arq:job:" + job_id)
    assert future.result(timeout=60) == 1
    assert count_lines(stack.home / "executions.log") == 1

    # Deliver the same job again, as arq would after losing track of it.
    client.set(b"arq:job:" + job_id, payload)
    client.zadd(queue, {job_id: 1})
    client.publish(stack.keys.wake, "e2e_tasks.count_execution")
    wait_until(
        lambda: client.zscore(queue, job_id) is None and not client.exists(b"arq:job:" + job_id),
        60,
        what="the redelivered job to be taken",
    )
    assert count_lines(stack.home / "executions.log") == 1
    assert state_names(stack.states(future.run_id))[-1] == "Completed"
    client.close()


def test_supervisor_restarts_killed_worker(stack: Stack) -> None:
    supervisor = stack.start_supervisor(["e2e_tasks"], "--processes", "2")
    first = wait_until(lambda: len(stack.worker_pids()) >= 2 and stack.worker_pids(), 60)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(stack.worker_pids() - first) >= 1, 60, what="a replacement worker"
    )
    assert e2e_tasks.add.delay(1, 1).result(timeout=60) == 2
    assert stack.stop(supervisor) == 0
    assert stack.heartbeats() == [] or all(
        beat["pid"] == victim for beat in stack.heartbeats()
    )


def test_sigterm_lets_run_finish_within_grace(stack: Stack) -> None:
    worker = stack.start_worker(["e2e_tasks"], TASKGATE_SHUTDOWN_GRACE="20")
    future = e2e_tasks.sleeper.delay(1.5)
    wait_until(lambda: future.state.type.value == "RUNNING", 60, what="the run to start")
    assert stack.stop(worker) == 0
    assert future.result(timeout=30) == 1.5
    assert count_lines(stack.home / "sleeper.log") == 1
    assert "AwaitingRetry" not in state_names(stack.states(future.run_id))


def test_sigterm_releases_run_past_grace(stack: Stack) -> None:
    worker = stack.start_worker(["e2e_tasks"], TASKGATE_SHUTDOWN_GRACE="0.2")
    future = e2e_tasks.sleeper.delay(3.0)
    wait_until(lambda: future.state.type.value == "RUNNING", 60, what="the run to start")
    assert stack.stop(worker) == 0
    wait_until(
        lambda: "AwaitingRetry" in state_names(stack.states(future.run_id)),
        30,
        what="the released run to wait for its retry",
    )
    stack.start_worker(["e2e_tasks"])
    assert future.result(timeout=60) == 3.0
    executions = read_records(stack, "sleeper")
    assert len(executions) == 2
    assert executions[0]["pid"] == worker.pid
    assert executions[1]["pid"] != worker.pid


def test_cancelling_interrupts_running_run(stack: Stack, tmp_path) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.wait_for_file.delay(str(tmp_path / "never"))
    wait_until(lambda: future.state.type.value == "RUNNING", 60, what="the run to start")
    stack.cancel(future.run_id)
    with pytest.raises(TaskRunCancelled):
        future.result(timeout=60)
    assert state_names(stack.states(future.run_id))[-2:] == ["Cancelling", "Cancelled"]


def test_unicode_nested_and_large_arguments_round_trip(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    nested = {"ü": ["日本語", {"deep": [1, 2.5, None, True, {"emoji": "🎉"}]}], "empty": {}}
    large = "x" * 500_000
    assert e2e_tasks.echo.delay(nested).result(timeout=60) == nested
    assert e2e_tasks.echo.delay(large).result(timeout=60) == large


def test_bad_arguments_raise_at_delay(stack: Stack) -> None:
    with pytest.raises(SerializationError, match="argument 'value'") as raised:
        e2e_tasks.echo.delay({"when": time})
    assert raised.value.argument == "argument 'value'"
    with pytest.raises(ArgumentError, match="'x'"):
        e2e_tasks.add.delay()
    with pytest.raises(ArgumentsTooLarge):
        e2e_tasks.echo.delay("y" * 2_000_000)


def test_unpersisted_result_comes_from_cache(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.unpersisted.delay(1)
    assert future.result(timeout=60) == 101


def test_pickle_task_round_trips(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    value = {("tuple", "key"): {1, 2, 3}}
    assert e2e_tasks.pickled.delay(value).result(timeout=60) == value
