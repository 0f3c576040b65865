"""PostgreSQL connections dropped during transitions: requests retry, state stays consistent.

A separate admin connection on the test database terminates every other backend
(``pg_terminate_backend``) several times while runs are created, claimed and completed.
A batch that loses its connection rolls back and sends no reply, so its senders resend;
a batch whose commit landed before the connection died is answered from the stored
decisions on the resend. Every run must end with exactly one history of Scheduled,
Pending, Running, Completed and one execution.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.faults import tasks
from tests.faults.harness import Stack, executions, wait_until
from workers import TaskFuture

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

RUNS = 200
TERMINATIONS = 6
PLAIN_HISTORY = [
    ("SCHEDULED", "Scheduled"),
    ("PENDING", "Pending"),
    ("RUNNING", "Running"),
    ("COMPLETED", "Completed"),
]


def terminate_other_backends(database_url: str) -> int:
    """Terminate every connection to the test database but this one; return how many."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False
    )

    async def terminate() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return sum(1 for row in rows if row[0])
        finally:
            await connection.close()

    return asyncio.run(terminate())


def test_dropped_connections_retry(postgres_stack: Stack, execution_log) -> None:
    stack = postgres_stack
    stack.start_service()
    stack.start_worker(concurrency=4, name="worker-a")
    stack.start_worker(concurrency=4, name="worker-b")
    client = stack.client()

    futures: list[TaskFuture] = []
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            for batch in range(RUNS // 20):
                labels = [f"p{batch}-{index}" for index in range(20)]
                futures.extend(
                    tasks.echo.map(
                        [str(execution_log)] * 20,
                        labels,
                        [{"batch": batch, "index": index} for index in range(20)],
                        [0.02] * 20,
                        client=client,
                    )
                )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    submitter = threading.Thread(target=submit, name="submitter", daemon=True)
    submitter.start()

    terminated = 0
    for round_number in range(1, TERMINATIONS + 1):
        # Terminate once more each time the workers have made progress.
        wait_until(
            lambda target=round_number * RUNS // (TERMINATIONS + 2): sum(
                executions(execution_log).values()
            ) >= target,
            300,
            f"progress before termination {round_number}",
        )
        terminated += terminate_other_backends(stack.database_url)

    submitter.join(timeout=300)
    assert not submitter.is_alive()
    assert failures == []
    assert terminated >= TERMINATIONS

    final = stack.wait_all_final(RUNS)
    assert set(final.values()) == {("COMPLETED", "Completed")}
    for future in futures:
        result = future.result(timeout=60)
        batch_text, index_text = result["label"][1:].split("-")
        assert result["payload"] == {"batch": int(batch_text), "index": int(index_text)}

    history = stack.state_history()
    wrong = {run_id: states for run_id, states in history.items() if states != PLAIN_HISTORY}
    assert wrong == {}
    counts = executions(execution_log)
    assert len(counts) == RUNS
    assert set(counts.values()) == {1}
