"""A worker killed or frozen mid-run: the run is recovered and completes exactly once.

`hold_first_attempt` has two retries and the tag `faults-slot`, limited to one slot.
Its first execution blocks, so the test can kill or freeze the worker while the run is
Running and holds the slot. The reaper finds the expired heartbeat and moves the run to
AwaitingRetry; a second worker takes the retry, which returns at once.

Documented count: the killed (or frozen) attempt and the retry both start, so the task
executes twice and the run records one Completed state.
"""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.faults import tasks
from tests.faults.harness import ManagedProcess, Stack, executions, wait_until
from tests.servers import free_port
from workers import TaskRunCrashed

pytestmark = pytest.mark.faults

HOLD_TASK_KEY = tasks.hold_first_attempt.task_key
RETRY_HISTORY = [
    ("SCHEDULED", "Scheduled"),
    ("PENDING", "Pending"),
    ("RUNNING", "Running"),
    ("SCHEDULED", "AwaitingRetry"),
    ("PENDING", "Pending"),
    ("RUNNING", "Retrying"),
    ("COMPLETED", "Completed"),
]


def start_with_slot_limit(stack: Stack) -> ManagedProcess:
    """Start the service with its HTTP API and limit the crash tests' tag to one slot."""
    port = free_port()
    service = stack.start_service(http_port=port)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/concurrency-limits",
        json={"tag": tasks.SLOT_TAG, "limit": 1},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return service


def wait_running_with_slot(stack: Stack, run_id: str, log_path, label: str) -> None:
    wait_until(lambda: executions(log_path).get(label) == 1, 120, f"{label} to start")
    wait_until(
        lambda: stack.run_states().get(run_id, ("", ""))[0] == "RUNNING",
        60,
        f"run {run_id} to be Running",
    )
    assert stack.slot_holders() == [(tasks.SLOT_TAG, run_id)]


def test_killed_worker_run_recovered(stack: Stack, execution_log) -> None:
    service = start_with_slot_limit(stack)
    first = stack.start_worker(concurrency=1, task_keys=[HOLD_TASK_KEY], name="worker-killed")
    killed_id = stack.worker_id_of(first.pid)
    client = stack.client()
    future = tasks.hold_first_attempt.apply_async(
        (str(execution_log), "killed", 600.0), client=client
    )
    run_id = str(future.run_id)
    wait_running_with_slot(stack, run_id, execution_log, "killed")

    first.kill()
    stack.start_worker(concurrency=1, task_keys=[HOLD_TASK_KEY], name="worker-rescuer")

    assert future.result(timeout=120) == {"label": "killed", "executions_before": 1}
    history = stack.state_history()[run_id]
    assert history == RETRY_HISTORY
    assert [kind for kind, _ in history].count("COMPLETED") == 1
    assert executions(execution_log) == {"killed": 2}
    assert stack.slot_holders() == []

    release = [
        decision
        for decision in stack.decisions(run_id)
        if decision["proposed_name"] == "AwaitingRetry"
    ]
    assert len(release) == 1
    assert release[0]["status"] == "ACCEPT"
    expected_line = (
        f"released run {run_id} of worker {killed_id} from RUNNING: ACCEPT to AwaitingRetry"
    )
    assert expected_line in service.log_text()


def test_killed_worker_without_retries_crashes(stack: Stack, execution_log) -> None:
    start_with_slot_limit(stack)
    task_key = tasks.hold_without_retries.task_key
    worker = stack.start_worker(concurrency=1, task_keys=[task_key], name="worker-killed")
    future = tasks.hold_without_retries.apply_async(
        (str(execution_log), "crashed", 600.0), client=stack.client()
    )
    run_id = str(future.run_id)
    wait_running_with_slot(stack, run_id, execution_log, "crashed")

    worker.kill()

    with pytest.raises(TaskRunCrashed):
        future.result(timeout=120)
    assert stack.state_history()[run_id] == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("CRASHED", "Crashed"),
    ]
    assert executions(execution_log) == {"crashed": 1}
    assert stack.slot_holders() == []


def test_frozen_worker_proposals_aborted(stack: Stack, execution_log) -> None:
    start_with_slot_limit(stack)
    frozen = stack.start_worker(concurrency=1, task_keys=[HOLD_TASK_KEY], name="worker-frozen")
    frozen_id = stack.worker_id_of(frozen.pid)
    assert frozen_id is not None
    client = stack.client()
    # The first attempt sleeps 5 s; the freeze outlasts the heartbeat TTL and the retry.
    future = tasks.hold_first_attempt.apply_async(
        (str(execution_log), "frozen", 5.0), client=client
    )
    run_id = str(future.run_id)
    wait_running_with_slot(stack, run_id, execution_log, "frozen")

    frozen.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: frozen_id not in stack.live_workers(), 60, "the heartbeat to expire")
        stack.start_worker(concurrency=1, task_keys=[HOLD_TASK_KEY], name="worker-rescuer")
        assert future.result(timeout=120) == {"label": "frozen", "executions_before": 1}
    finally:
        frozen.signal(signal.SIGCONT)

    def late_completion_decided() -> list[dict]:
        return [
            decision
            for decision in stack.decisions(run_id)
            if decision["proposed_type"] == "COMPLETED" and decision["status"] == "ABORT"
        ]

    aborted = wait_until(late_completion_decided, 60, "the frozen worker's late Completed")
    assert len(aborted) == 1
    completions = [
        decision
        for decision in stack.decisions(run_id)
        if decision["proposed_type"] == "COMPLETED"
    ]
    assert [decision["status"] for decision in completions] == ["ACCEPT", "ABORT"]

    history = stack.state_history()[run_id]
    assert history == RETRY_HISTORY
    assert executions(execution_log) == {"frozen": 2}
    assert stack.slot_holders() == []
    assert frozen.running()


def test_blocked_event_loop_not_reaped(stack: Stack, execution_log) -> None:
    """A live worker whose run blocks its event loop keeps beating from its own thread."""
    stack.start_service()
    worker = stack.start_worker(concurrency=1, name="worker-blocked")
    worker_id = stack.worker_id_of(worker.pid)
    ttl = float(stack.settings["TASKGATE_HEARTBEAT_TTL"])
    future = tasks.block_event_loop.apply_async(
        (str(execution_log), "blocked", 3 * ttl), client=stack.client()
    )

    assert future.result(timeout=120) == "blocked"
    assert executions(execution_log) == {"blocked": 1}
    assert stack.state_history()[str(future.run_id)] == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
    ]
    assert worker_id in stack.live_workers()
    assert "expired" not in stack.group.started[0].log_text()


def test_cancel_survives_service_restart(stack: Stack, execution_log) -> None:
    """A running run cancelled just before the service dies still ends Cancelled."""
    port = free_port()
    service = stack.start_service(http_port=port)
    limit = httpx.post(
        f"http://127.0.0.1:{port}/concurrency-limits",
        json={"tag": tasks.SLOT_TAG, "limit": 1},
        timeout=30,
    )
    assert limit.status_code == 200, limit.text
    stack.start_worker(concurrency=1, task_keys=[HOLD_TASK_KEY], name="worker")
    future = tasks.hold_first_attempt.apply_async(
        (str(execution_log), "cancelled", 30.0), client=stack.client()
    )
    run_id = str(future.run_id)
    wait_running_with_slot(stack, run_id, execution_log, "cancelled")

    answer = httpx.post(f"http://127.0.0.1:{port}/runs/{run_id}/cancel", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ACCEPT"
    assert answer.json()["state"]["type"] == "CANCELLING"
    service.kill()
    stack.start_service(http_port=free_port())

    final = stack.wait_all_final(1, seconds=120)
    assert final[run_id][0] == "CANCELLED"
    history = [kind for kind, _ in stack.state_history()[run_id]]
    assert history == ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "CANCELLED"]
    assert executions(execution_log) == {"cancelled": 1}
    assert stack.slot_holders() == []
