"""The service killed with requests in flight: every request is answered once it is back.

A submitter thread keeps creating runs while two workers claim, run and complete them,
so create, claim and completion requests are all in flight when the service gets
SIGKILL. The restarted replica reads what the dead one never read, takes over what it
held unacknowledged, and answers a transition id it already decided with the stored
decision. No transition applies twice,
so every run's history is exactly Scheduled, Pending, Running, Completed.
"""

from __future__ import annotations

import threading

import pytest

from tests.faults import tasks
from tests.faults.harness import Stack, executions, wait_until
from workers import TaskFuture

pytestmark = pytest.mark.faults

BATCHES = 10
BATCH_SIZE = 30
PLAIN_HISTORY = [
    ("SCHEDULED", "Scheduled"),
    ("PENDING", "Pending"),
    ("RUNNING", "Running"),
    ("COMPLETED", "Completed"),
]


def unanswered_requests(connection, key_prefix: str) -> int:
    """Count the requests the consumer group holds unacknowledged or has not read yet."""
    groups = connection.xinfo_groups(f"{key_prefix}:requests")
    return sum(group["pending"] + (group["lag"] or 0) for group in groups)


def test_killed_service_answers_after_restart(stack: Stack, execution_log) -> None:
    service = stack.start_service()
    stack.start_worker(concurrency=4, name="worker-a")
    stack.start_worker(concurrency=4, name="worker-b")
    client = stack.client()

    futures: list[TaskFuture] = []
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            for batch in range(BATCHES):
                labels = [f"b{batch}-{index}" for index in range(BATCH_SIZE)]
                futures.extend(
                    tasks.echo.map(
                        [str(execution_log)] * BATCH_SIZE,
                        labels,
                        [{"batch": batch, "index": index} for index in range(BATCH_SIZE)],
                        [0.02] * BATCH_SIZE,
                        client=client,
                    )
                )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    submitter = threading.Thread(target=submit, name="submitter", daemon=True)
    submitter.start()
    wait_until(lambda: sum(executions(execution_log).values()) >= 40, 120, "40 executions")

    service.kill()
    with stack.redis() as connection:
        in_flight = wait_until(
            lambda: unanswered_requests(connection, stack.key_prefix),
            120,
            "requests left unanswered by the killed service",
        )
    assert in_flight > 0

    stack.start_service()
    submitter.join(timeout=300)
    assert not submitter.is_alive()
    assert failures == []
    assert len(futures) == BATCHES * BATCH_SIZE
    final = stack.wait_all_final(BATCHES * BATCH_SIZE)
    assert set(final.values()) == {("COMPLETED", "Completed")}

    for future in futures:
        result = future.result(timeout=120)
        batch_text, index_text = result["label"][1:].split("-")
        assert result["payload"] == {"batch": int(batch_text), "index": int(index_text)}

    history = stack.state_history()
    assert len(history) == BATCHES * BATCH_SIZE
    wrong = {run_id: states for run_id, states in history.items() if states != PLAIN_HISTORY}
    assert wrong == {}
    counts = executions(execution_log)
    assert len(counts) == BATCHES * BATCH_SIZE
    assert set(counts.values()) == {1}
