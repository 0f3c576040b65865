"""Bad input ends `taskgate` with one clear error line, a non-zero exit and no traceback."""

from __future__ import annotations

import pytest

from tests.cli.helpers import cli_environment, run_taskgate
from tests.servers import free_port

pytestmark = pytest.mark.integration


def assert_one_error_line(completed, *fragments: str) -> None:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_module(clean_redis, tmp_path):
    environment = cli_environment(tmp_path, TASKGATE_REDIS_URL=clean_redis)

    completed = run_taskgate("worker", "no_such_module_for_taskgate", environment=environment)

    assert_one_error_line(completed, "'no_such_module_for_taskgate'", "not found")


def test_unknown_task_key(clean_redis, tmp_path):
    environment = cli_environment(tmp_path, TASKGATE_REDIS_URL=clean_redis)

    completed = run_taskgate(
        "worker", "tests.cli.sample_tasks", "--task-key", "tests.cli.missing",
        environment=environment,
    )

    assert_one_error_line(completed, "'tests.cli.missing'", "--task-key")


@pytest.mark.parametrize(
    "arguments",
    [("inspect", "queues"), ("worker", "tests.cli.sample_tasks"), ("server",), ("cancel", "x")],
)
def test_refused_redis_url(tmp_path, arguments):
    # Nothing listens on a port that was free a moment ago, so the connection is refused.
    url = f"redis://127.0.0.1:{free_port()}/0"
    environment = cli_environment(tmp_path, TASKGATE_REDIS_URL=url)
    if arguments[0] == "cancel":
        arguments = ("cancel", "6f1c1f0e-8f0c-4a53-9d57-2b9b5b0f4e10")

    completed = run_taskgate(*arguments, environment=environment)

    assert_one_error_line(completed, url, "connection refused", "TASKGATE_REDIS_URL")


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("mysql://root@127.0.0.1/taskgate", "sqlite+aiosqlite:// or postgresql+asyncpg://"),
        ("postgresql://postgres@127.0.0.1/taskgate", "postgresql+asyncpg://"),
        ("sqlite:///tmp/taskgate.db", "sqlite+aiosqlite://"),
    ],
)
def test_database_url_with_bad_scheme(tmp_path, url, fix):
    environment = cli_environment(tmp_path, TASKGATE_DATABASE_URL=url)
    scheme = url.split("://")[0]

    for arguments in (("db", "upgrade"), ("inspect", "runs"), ("concurrency-limit", "ls")):
        completed = run_taskgate(*arguments, environment=environment)
        assert_one_error_line(completed, f"'{scheme}'", fix)


def test_invalid_run_id(tmp_path):
    completed = run_taskgate("inspect", "run", "not-a-uuid", environment=cli_environment(tmp_path))

    assert_one_error_line(completed, "'not-a-uuid'", "UUID")


def test_invalid_setting(tmp_path):
    environment = cli_environment(tmp_path, TASKGATE_BATCH_SIZE="many")

    completed = run_taskgate("inspect", "runs", environment=environment)

    assert_one_error_line(completed, "TASKGATE_BATCH_SIZE", "'many'")


def test_demo_with_missing_folder(tmp_path):
    missing = tmp_path / "missing"

    completed = run_taskgate(
        "demo", "--files", str(missing), environment=cli_environment(tmp_path)
    )

    assert_one_error_line(completed, str(missing), "not a folder")
