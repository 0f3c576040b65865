"""End to end: bad jobs, full queues and a worker killed mid-run, as a worker meets them."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from tests.e2e_helpers import TASK_MODULES_DIR, Stack, count_lines, state_names, wait_until
from workers import QueueFullError

sys.path.insert(0, str(TASK_MODULES_DIR))
import e2e_tasks  # noqa: E402

pytestmark = pytest.mark.e2e

TASK_KEY = "e2e_tasks.count_execution"


def rewrite_queued_job(stack: Stack, change) -> object:
    """Submit a run due in 3 s, rewrite its queued arq job with `change`, return its future."""
    client = stack.redis()
    future = e2e_tasks.count_execution.apply_async((1,), countdown=3)
    queue = stack.keys.queue(TASK_KEY)
    job_id = wait_until(lambda: client.zrange(queue, 0, 0), 30, what="the job to be queued")[0]
    job_key = b"arq:job:" + job_id
    payload = json.loads(client.get(job_key))
    change(payload)
    client.set(job_key, json.dumps(payload), keepttl=True)
    client.close()
    return future


def test_unknown_parameters_fail_run_with_reason(stack: Stack) -> None:
    def rename_parameter(payload: dict) -> None:
        payload["k"]["parameters"] = {"serializer": "json", "value": {"renamed": 1}}

    future = rewrite_queued_job(stack, rename_parameter)
    stack.start_worker(["e2e_tasks"])
    state = future.wait(timeout=60)
    assert state.name == "Failed"
    assert "'renamed'" in state.message
    assert count_lines(stack.home / "executions.log") == 0
    assert stack.run(future.run_id)["id"] == str(future.run_id)


def test_corrupt_job_fails_run_with_reason(stack: Stack) -> None:
    def drop_fields(payload: dict) -> None:
        payload["k"] = {"garbage": True}

    future = rewrite_queued_job(stack, drop_fields)
    stack.start_worker(["e2e_tasks"])
    state = future.wait(timeout=60)
    assert state.name == "Failed"
    assert "unreadable" in state.message
    assert count_lines(stack.home / "executions.log") == 0


def test_full_queue_raises_at_delay(redis_url: str, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    stack = Stack(
        redis_url=redis_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'taskgate.db'}",
        home=home,
        overrides={"TASKGATE_MAX_QUEUED_PER_TASK_KEY": "3", "TG_TEST_OUTPUT": str(home)},
    )
    import workers.client  # noqa: PLC0415

    try:
        stack.start_service()
        workers.client.configure(stack.settings())
        for item in range(3):
            e2e_tasks.add.delay(item)
        with pytest.raises(QueueFullError) as raised:
            e2e_tasks.add.delay(99)
        assert raised.value.task_key == "e2e_tasks.add"
    finally:
        stack.stop_all()


@pytest.mark.faults
def test_killed_worker_run_is_recovered_once(stack: Stack) -> None:
    victim = stack.start_worker(["e2e_tasks"], name="victim")
    future = e2e_tasks.sleeper.delay(2.0)
    wait_until(lambda: future.state.type.value == "RUNNING", 60, what="the run to start")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    stack.start_worker(["e2e_tasks"], name="rescuer")
    assert future.result(timeout=120) == 2.0
    names = state_names(stack.states(future.run_id))
    assert names.count("Completed") == 1
    assert "AwaitingRetry" in names
    assert count_lines(stack.home / "sleeper.log") == 2


@pytest.mark.faults
def test_loop_blocking_run_keeps_heartbeat(stack: Stack) -> None:
    # The heartbeat TTL is 6 s here and the run blocks the worker's event loop for 8 s.
    # The heartbeat thread must keep beating, so the run is never taken for dead.
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.blocks_event_loop.delay(8.0)
    assert future.result(timeout=120) == 8.0
    assert "AwaitingRetry" not in state_names(stack.states(future.run_id))
    assert count_lines(stack.home / "blocks_event_loop.log") == 1


@pytest.mark.faults
def test_frozen_worker_late_proposal_is_aborted(stack: Stack) -> None:
    frozen = stack.start_worker(["e2e_tasks"], name="frozen")
    future = e2e_tasks.sleeper.delay(2.0)
    wait_until(lambda: future.state.type.value == "RUNNING", 60, what="the run to start")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: "AwaitingRetry" in state_names(stack.states(future.run_id)),
            120,
            what="the reaper to take the frozen worker's run",
        )
        stack.start_worker(["e2e_tasks"], name="rescuer")
        assert future.result(timeout=120) == 2.0
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    # The frozen worker wakes, finishes its copy and proposes Completed with a claim
    # token the reaper cleared: that proposal is aborted and records nothing.
    wait_until(
        lambda: "proposing Completed was aborted" in stack.log_path("frozen").read_text(),
        60,
        what="the frozen worker's late proposal",
    )
    names = state_names(stack.states(future.run_id))
    assert names.count("Completed") == 1
    assert count_lines(stack.home / "sleeper.log") == 2
