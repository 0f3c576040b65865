"""End to end: `.delay()` to result through a real service and real worker processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e_helpers import TASK_MODULES_DIR, Stack
from workers import TaskFuture, wait_all
from workers.client import TaskgateClient

sys.path.insert(0, str(TASK_MODULES_DIR))
import e2e_tasks  # noqa: E402

pytestmark = pytest.mark.e2e


def test_delay_sync_task_returns_result(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.add.delay(2, y=3)
    assert future.result(timeout=60) == 5
    assert future.state.name == "Completed"


async def test_delay_async_task_returns_result(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.multiply.delay(1.5, 4)
    assert await future.aresult(timeout=60) == 6.0


def test_inline_call_runs_without_queue() -> None:
    assert e2e_tasks.add(40, 2) == 42


def test_map_over_hundred_items(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"], "--concurrency", "20")
    futures = e2e_tasks.add.map(range(100), y=1000)
    assert len({future.run_id for future in futures}) == 100
    results = [future.result(timeout=120) for future in futures]
    assert results == [item + 1000 for item in range(100)]


def test_wait_all_splits_done_and_pending(stack: Stack, tmp_path) -> None:
    stack.start_worker(["e2e_tasks"])
    gate = tmp_path / "gate"
    quick = [e2e_tasks.add.delay(item) for item in range(5)]
    blocked = e2e_tasks.wait_for_file.delay(str(gate))

    done, pending = wait_all(quick, timeout=60)
    assert sorted(future.result() for future in done) == [1, 2, 3, 4, 5]
    assert pending == []

    done, pending = wait_all([blocked], timeout=0.5)
    assert done == []
    assert pending == [blocked]

    gate.touch()
    done, pending = wait_all([blocked], timeout=60)
    assert done == [blocked]
    assert blocked.result() == str(gate)


def test_future_rebuilt_in_another_process(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.add.delay(20, 22)
    script = (
        "import sys; from workers import TaskFuture; "
        "print(TaskFuture(sys.argv[1]).result(timeout=60))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(future.run_id)],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert output.stdout.strip() == "42"


def test_polling_resolves_without_notifications(stack: Stack) -> None:
    # A client that never subscribes to the events channel hears no notification at
    # all; its future must still resolve by polling the run.
    stack.start_worker(["e2e_tasks"])
    client = TaskgateClient(stack.settings(), listen_events=False)
    try:
        future = e2e_tasks.add.apply_async((1, 2), client=client)
        rebuilt = TaskFuture(future.run_id, client=client)
        assert rebuilt.result(timeout=60) == 3
    finally:
        client.close()


def test_failure_reraises_type_and_message(stack: Stack) -> None:
    stack.start_worker(["e2e_tasks"])
    future = e2e_tasks.fails_with_key_error.delay("missing-key")
    with pytest.raises(KeyError) as raised:
        future.result(timeout=60)
    assert "missing-key" in str(raised.value)
    assert "fails_with_key_error" in raised.value.remote_traceback


@pytest.mark.postgres
def test_delay_map_and_retry_on_postgres(postgres_stack: Stack) -> None:
    postgres_stack.start_worker(["e2e_tasks"], "--concurrency", "10")
    futures = e2e_tasks.add.map(range(20), y=1)
    assert [future.result(timeout=120) for future in futures] == list(range(1, 21))
    failing = e2e_tasks.always_fails.delay("postgres")
    with pytest.raises(RuntimeError):
        failing.result(timeout=120)
    assert postgres_stack.states(failing.run_id)[-1]["name"] == "Failed"
