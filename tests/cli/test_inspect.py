"""`taskgate inspect` shows what Redis and SQL hold: queue depths and a run's decisions."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from queue_server.keys import Keys
from queue_server.settings import Settings
from tests.cli.helpers import REPO_ROOT, cli_environment, run_taskgate, table_row, taskgate_command
from tests.cli.sample_tasks import FAIL_ONCE_FOLDER_VARIABLE

pytestmark = pytest.mark.integration

# Guards against a hung stack; no test asserts on how long anything takes.
RESULT_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 120


def test_inspect_queues_shows_redis_depth(clean_redis, key_prefix, tmp_path):
    keys = Keys(key_prefix)
    client = redis.Redis.from_url(clean_redis)
    now_ms = int(time.time() * 1000)
    due_now = {f"{uuid.uuid4()}:{uuid.uuid4()}": now_ms - 1000 * index for index in range(3)}
    due_later = {f"{uuid.uuid4()}:{uuid.uuid4()}": now_ms + 3_600_000 for _ in range(2)}
    client.zadd(keys.queue("reports.build"), {**due_now, **due_later})
    client.zadd(keys.queue("mail.send"), due_now)
    environment = cli_environment(
        tmp_path, TASKGATE_REDIS_URL=clean_redis, TASKGATE_KEY_PREFIX=key_prefix
    )

    completed = run_taskgate("inspect", "queues", environment=environment)

    assert completed.returncode == 0, completed.stderr
    assert table_row(completed.stdout, "reports.build") == ["reports.build", "3", "2", "5", "none"]
    assert table_row(completed.stdout, "mail.send") == ["mail.send", "3", "0", "3", "none"]
    assert client.zcard(keys.queue("reports.build")) == 5
    client.close()


@pytest.fixture
def stack_environment(clean_redis, key_prefix, tmp_path) -> dict[str, str]:
    faults = tmp_path / "fail-once"
    faults.mkdir()
    return cli_environment(
        tmp_path,
        TASKGATE_REDIS_URL=clean_redis,
        TASKGATE_KEY_PREFIX=key_prefix,
        TASKGATE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'taskgate.db'}",
        **{FAIL_ONCE_FOLDER_VARIABLE: str(faults)},
    )


@pytest.fixture
def service_and_worker(stack_environment) -> Iterator[dict[str, str]]:
    """A `taskgate server` and a `taskgate worker` that serves only tests.cli.flaky."""
    commands = [
        taskgate_command("server"),
        taskgate_command("worker", "tests.cli.sample_tasks", "--task-key", "tests.cli.flaky"),
    ]
    processes = [
        subprocess.Popen(
            command,
            env=stack_environment,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    try:
        yield stack_environment
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def client(service_and_worker):
    from workers.client import configure

    settings = Settings(
        redis_url=service_and_worker["TASKGATE_REDIS_URL"],
        key_prefix=service_and_worker["TASKGATE_KEY_PREFIX"],
        request_timeout=5,
        future_poll_interval=0.2,
    )
    client = configure(settings)
    yield client
    client.run(_close(client))


def _close(client):
    async def close() -> None:
        await client.waiter.close()
        await client.service.close()
        await client.redis.aclose()

    return close


@pytest.mark.e2e
def test_inspect_run_shows_retry_decision(client, service_and_worker):
    from tests.cli.sample_tasks import flaky

    future = flaky.apply_async(("token-1",), client=client)
    assert future.result(timeout=RESULT_TIMEOUT_SECONDS) == "token-1"

    completed = run_taskgate("inspect", "run", str(future.run_id), environment=service_and_worker)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    retry_rows = [line for line in lines if "REJECT" in line and "RetryFailedTasks" in line]
    assert retry_rows, completed.stdout
    assert "AwaitingRetry" in retry_rows[0]
    assert "first attempt for token-1 fails on purpose" in completed.stdout
    assert any("COMPLETED" in line and "Completed" in line for line in lines)


@pytest.mark.e2e
def test_unserved_task_key_waits_in_queue(client, service_and_worker):
    from tests.cli.sample_tasks import unserved

    futures = [unserved.apply_async((value,), client=client) for value in range(3)]
    environment = service_and_worker
    # The service enqueues a run right after it replies, so wait for the queue entries.
    queue = Keys(environment["TASKGATE_KEY_PREFIX"]).queue("tests.cli.unserved")
    redis_client = redis.Redis.from_url(environment["TASKGATE_REDIS_URL"])
    deadline = time.monotonic() + RESULT_TIMEOUT_SECONDS
    while redis_client.zcard(queue) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    redis_client.close()

    queues = run_taskgate("inspect", "queues", environment=environment)
    runs = run_taskgate(
        "inspect", "runs", "--task-key", "tests.cli.unserved", environment=environment
    )

    assert queues.returncode == 0, queues.stderr
    assert table_row(queues.stdout, "tests.cli.unserved") == [
        "tests.cli.unserved", "3", "0", "3", "none"
    ]
    assert runs.returncode == 0, runs.stderr
    for future in futures:
        row = table_row(runs.stdout, str(future.run_id))
        assert row is not None, runs.stdout
        assert row[2] == "Scheduled (SCHEDULED)"
