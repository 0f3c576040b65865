"""Redis restarted without persistence while 500 runs are queued and some are running.

The restart loses every queue, job, heartbeat and in-flight request. SQL keeps the runs,
so the reconciler puts every Scheduled run back on its queue; clients and workers resend
the requests that got no reply; the reaper waits one heartbeat TTL after it sees the
restart, by which time the live workers have beaten again, so the runs they hold are
not reaped. `echo` has no retries: a reaped Running run would end Crashed.
"""

from __future__ import annotations

import threading

import pytest

from tests.faults import tasks
from tests.faults.harness import Stack, executions, wait_until
from tests.servers import RedisServer
from workers import TaskFuture

pytestmark = pytest.mark.faults

QUEUED_RUNS = 500
LATE_RUNS = 50


def submit(stack: Stack, log_path, prefix: str, count: int) -> list[TaskFuture]:
    labels = [f"{prefix}{index}" for index in range(count)]
    return tasks.echo.map(
        [str(log_path)] * count,
        labels,
        [{"label": label, "text": "ü" * (index % 7)} for index, label in enumerate(labels)],
        [0.05] * count,
        client=stack.client(),
    )


def test_redis_restart_loses_nothing(
    stack: Stack, private_redis: RedisServer, execution_log
) -> None:
    stack.start_service()
    stack.start_worker(concurrency=2, name="worker-a")
    stack.start_worker(concurrency=2, name="worker-b")

    futures = submit(stack, execution_log, "q", QUEUED_RUNS)

    def running_and_queued() -> tuple[list[str], int] | None:
        states = stack.run_states()
        running = [run_id for run_id, (kind, _) in states.items() if kind == "RUNNING"]
        scheduled = sum(1 for kind, _ in states.values() if kind == "SCHEDULED")
        return (running, scheduled) if running and scheduled >= QUEUED_RUNS // 2 else None

    running_at_restart, scheduled_at_restart = wait_until(
        running_and_queued, 120, "runs both Running and queued"
    )

    late: list[TaskFuture] = []
    late_failures: list[BaseException] = []

    def submit_late() -> None:
        try:
            late.extend(submit(stack, execution_log, "late", LATE_RUNS))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            late_failures.append(error)

    private_redis.stop()
    # These create requests meet a Redis that is down; their senders must resend them.
    submitter = threading.Thread(target=submit_late, name="late-submitter", daemon=True)
    submitter.start()
    private_redis.start()

    submitter.join(timeout=300)
    assert not submitter.is_alive()
    assert late_failures == []
    every_future = futures + late
    final = stack.wait_all_final(QUEUED_RUNS + LATE_RUNS)
    assert set(final.values()) == {("COMPLETED", "Completed")}

    for future in every_future:
        result = future.result(timeout=60)
        index = int(result["label"].lstrip("qlate"))
        assert result["payload"] == {"label": result["label"], "text": "ü" * (index % 7)}

    history = stack.state_history()
    assert len(history) == QUEUED_RUNS + LATE_RUNS
    completed = {run_id: [kind for kind, _ in states].count("COMPLETED")
                 for run_id, states in history.items()}
    assert set(completed.values()) == {1}
    crashed = [run_id for run_id, states in history.items() if ("CRASHED", "Crashed") in states]
    assert crashed == []
    for run_id in running_at_restart:
        assert [kind for kind, _ in history[run_id]] == [
            "SCHEDULED", "PENDING", "RUNNING", "COMPLETED"
        ]

    counts = executions(execution_log)
    assert len(counts) == QUEUED_RUNS + LATE_RUNS
    assert set(counts.values()) == {1}
    assert scheduled_at_restart >= QUEUED_RUNS // 2
    # The reconciler can restore the entry of a run that a worker claims a moment later;
    # that stale entry is dropped when a worker's claim of it is aborted.
    wait_until(
        lambda: all(depth == 0 for depth in stack.queued_jobs().values()),
        120,
        "every queue to drain",
        interval=0.5,
    )
