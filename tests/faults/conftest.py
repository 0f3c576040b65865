"""Fixtures of the fault tests: a private Redis, a process group and a stack per test.

Every fault test gets its own redis-server, because many of them restart or kill it,
and its own SQLite file (or PostgreSQL database, for the tests that ask for it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import ProcessGroup, Stack
from tests.servers import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, without persistence."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProcessGroup]:
    """The processes this test starts; each is stopped by its pid at teardown.

    When the test failed, the tail of every captured log is printed, so the report shows
    what the service and the workers logged.
    """
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(group.logs()[-20000:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def execution_log(tmp_path: Path) -> Path:
    """The file the test tasks append one line per execution to."""
    return tmp_path / "executions.log"


@pytest.fixture
def stack(private_redis: RedisServer, processes: ProcessGroup, sqlite_url: str) -> Stack:
    """A stack on the private Redis and a fresh SQLite database; nothing started yet."""
    return Stack(
        group=processes,
        redis_url=private_redis.url,
        database_url=sqlite_url,
        key_prefix=f"tgfault{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def postgres_stack(private_redis: RedisServer, processes: ProcessGroup, postgres_url: str) -> Stack:
    """A stack on the private Redis and a fresh PostgreSQL database; nothing started yet."""
    return Stack(
        group=processes,
        redis_url=private_redis.url,
        database_url=postgres_url,
        key_prefix=f"tgfault{uuid.uuid4().hex[:8]}",
    )
