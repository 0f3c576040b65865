"""Real processes for the fault tests: a service, workers, and a way to read SQL afterwards.

Every process a test starts goes through a `ProcessGroup`, which records its pid and at
teardown stops exactly those pids (SIGKILL after a grace period), never anything found
by name. Each process writes its stdout and stderr to a log file under the test's
folder, so a failing test can show what the service and the workers logged, and the
security tests can search those logs for secrets.

Settings reach the processes as TASKGATE_* environment variables, shortened for tests
by `fast_settings`; the test process builds its own client from the same values.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from queue_server.settings import Settings
from workers.client import TaskgateClient, configure

REPOSITORY = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.faults.tasks"
FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def fast_settings(**overrides: Any) -> dict[str, str]:
    """Return TASKGATE_* values with leases and waits shortened for tests.

    The heartbeat TTL stays at several seconds, so a live worker on a loaded 2-core
    machine still beats (every third of the TTL) well inside it.
    """
    values: dict[str, Any] = {
        "heartbeat_ttl": 3.0,
        "reaper_interval": 0.5,
        "reconcile_interval": 2.0,
        # The default: a shorter resend timeout makes senders flood a busy service
        # with copies of requests it has not reached yet.
        "request_timeout": 10.0,
        "claim_idle": 2.0,
        "shutdown_grace": 2.0,
        "future_poll_interval": 2.0,
        "worker_poll_delay": 0.5,
        "tag_concurrency_slot_wait_seconds": 0.5,
        "log_level": "INFO",
    }
    values.update(overrides)
    return {f"TASKGATE_{name.upper()}": str(value) for name, value in values.items()}


class Deadline:
    """A bound on a wait; it only decides when a stuck test gives up, never what passes."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() > self.end


def wait_until(
    condition: Callable[[], Any], seconds: float, what: str, *, interval: float = 0.1
) -> Any:
    """Poll `condition` until it returns a true value, and return that value.

    Raise AssertionError naming `what` after `seconds`. The bound is a give-up time for
    a stuck system, so it is generous; no test asserts on how long the wait took.
    """
    deadline = Deadline(seconds, what)
    while True:
        value = condition()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"gave up after {seconds} s waiting for {what}")
        time.sleep(interval)


@dataclass
class ManagedProcess:
    """One process started by a test, with its output captured in `log_path`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPOSITORY,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: signal.Signals) -> None:
        """Send a signal to this process, by its pid."""
        os.kill(self.pid, number)

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.running():
            self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process; SIGKILL it if it is still running after `grace` seconds."""
        if not self.running():
            return
        self.signal(signal.SIGTERM)
        try:
            assert self.process is not None
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ProcessGroup:
    """The processes of one test; `close()` stops each of them by its pid."""

    folder: Path
    started: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        index = len(self.started)
        log_path = self.folder / f"{index:02d}-{name}.log"
        managed = ManagedProcess(name, argv, env, log_path).start()
        self.started.append(managed)
        return managed

    def close(self) -> None:
        for managed in reversed(self.started):
            if managed.running():
                # SIGCONT first, so a process a test froze can handle SIGTERM.
                managed.signal(signal.SIGCONT)
                managed.stop(grace=10.0)

    def logs(self) -> str:
        """Return every captured log, each under a header naming its process."""
        parts = [f"===== {managed.name} (pid {managed.pid})\n{managed.log_text()}"
                 for managed in self.started if managed.process is not None]
        return "\n".join(parts)


@dataclass
class Stack:
    """A taskgate deployment under test: one Redis, one database, a key prefix, settings."""

    group: ProcessGroup
    redis_url: str
    database_url: str
    key_prefix: str
    settings: dict[str, str] = field(default_factory=fast_settings)
    # Builds the test's own Redis connection; the default reads `redis_url`, which must
    # then be a plain redis:// URL.
    connect_redis: Callable[[], redis.Redis] | None = None
    _client: TaskgateClient | None = None

    def environment(self, **extra: str) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")
        }
        env.update(self.settings)
        env.update(
            {
                "TASKGATE_REDIS_URL": self.redis_url,
                "TASKGATE_DATABASE_URL": self.database_url,
                "TASKGATE_KEY_PREFIX": self.key_prefix,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def redis(self) -> redis.Redis:
        if self.connect_redis is not None:
            return self.connect_redis()
        return redis.Redis.from_url(self.redis_url)

    # -- processes ----------------------------------------------------------------------

    def start_service(
        self, *, http_port: int | None = None, wait: bool = True, **extra: str
    ) -> ManagedProcess:
        """Start ``python -m queue_server``; with `wait`, return once its heartbeat is up."""
        argv = [sys.executable, "-m", "queue_server"]
        env = self.environment(**extra)
        if http_port is None:
            argv.append("--no-http")
        else:
            env["TASKGATE_HTTP_PORT"] = str(http_port)
        service = self.group.start("service", argv, env)
        if wait:
            self.wait_for_service(service)
        return service

    def wait_for_service(self, service: ManagedProcess, seconds: float = 120.0) -> None:
        before = set(self.service_heartbeats())

        def ready() -> bool:
            self._check_alive(service)
            return bool(set(self.service_heartbeats()) - before) or self._replica_ready(service)

        wait_until(ready, seconds, f"service pid {service.pid} to become ready")

    def _replica_ready(self, service: ManagedProcess) -> bool:
        return f"-{service.pid}-" in " ".join(self.service_heartbeats())

    def service_heartbeats(self) -> list[str]:
        client = self.redis()
        try:
            pattern = f"{self.key_prefix}:service:*"
            return [name.decode() for name in client.scan_iter(match=pattern)]
        except redis.RedisError:
            return []
        finally:
            client.close()

    def start_worker(
        self,
        *,
        concurrency: int = 4,
        task_keys: Iterable[str] = (),
        wait: bool = True,
        name: str = "worker",
        **extra: str,
    ) -> ManagedProcess:
        """Start ``python -m workers tests.faults.tasks``; with `wait`, return once it beats."""
        argv = [sys.executable, "-m", "workers", TASKS_MODULE, "--concurrency", str(concurrency)]
        for task_key in task_keys:
            argv += ["--task-key", task_key]
        worker = self.group.start(name, argv, self.environment(**extra))
        if wait:
            self.wait_for_worker(worker)
        return worker

    def wait_for_worker(self, worker: ManagedProcess, seconds: float = 120.0) -> str:
        """Wait for the worker's heartbeat key; return its worker id."""

        def heartbeat() -> str | None:
            self._check_alive(worker)
            return self.worker_id_of(worker.pid)

        return wait_until(heartbeat, seconds, f"worker pid {worker.pid} to beat")

    def worker_id_of(self, pid: int) -> str | None:
        """Return the worker id whose live heartbeat names `pid`, if any."""
        for worker_id in self.live_workers():
            if f"-{pid}-" in worker_id:
                return worker_id
        return None

    def live_workers(self) -> list[str]:
        client = self.redis()
        prefix = f"{self.key_prefix}:workers:"
        try:
            return [name.decode()[len(prefix):] for name in client.scan_iter(match=f"{prefix}*")]
        except redis.RedisError:
            return []
        finally:
            client.close()

    def _check_alive(self, managed: ManagedProcess) -> None:
        if not managed.running():
            raise AssertionError(
                f"{managed.name} (pid {managed.pid}) exited with {managed.process.returncode}:\n"
                f"{managed.log_text()[-4000:]}"
            )

    # -- the test process as a user ---------------------------------------------------

    def client(self, **overrides: Any) -> TaskgateClient:
        """Configure this process's taskgate client for the stack and return it."""
        values = {
            key.removeprefix("TASKGATE_").lower(): value for key, value in self.settings.items()
        }
        values.update(overrides)
        settings = Settings(
            redis_url=self.redis_url,
            database_url=self.database_url,
            key_prefix=self.key_prefix,
            **values,
        )
        self._client = configure(settings)
        return self._client

    # -- reading the system of record -------------------------------------------------

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run one read query on the stack's database and return its rows."""
        return asyncio.run(_fetch(self.database_url, query, params))

    def state_history(self) -> dict[str, list[tuple[str, str]]]:
        """Return every task run's states as (type, name) pairs, oldest first, by run id."""
        rows = self.sql(
            "SELECT task_run_id, type, name FROM task_run_states ORDER BY task_run_id, seq"
        )
        history: dict[str, list[tuple[str, str]]] = {}
        for run_id, state_type, name in rows:
            history.setdefault(str(UUID(str(run_id))), []).append((state_type, name))
        return history

    def run_states(self) -> dict[str, tuple[str, str]]:
        """Return each task run's current (state type, state name), by run id."""
        rows = self.sql("SELECT id, state_type, state_name FROM task_runs")
        return {str(UUID(str(run_id))): (kind, name) for run_id, kind, name in rows}

    def wait_all_final(self, expected: int, seconds: float = 600.0) -> dict[str, tuple[str, str]]:
        """Wait until the database contains `expected` task runs, all in a final state.

        Reading SQL here, instead of waiting on the futures, keeps the test's own polling
        off the service while it works through a backlog.
        """

        def all_final() -> dict[str, tuple[str, str]] | None:
            states = self.run_states()
            done = [kind for kind, _ in states.values() if kind in FINAL_STATE_TYPES]
            return states if len(states) == expected and len(done) == expected else None

        return wait_until(all_final, seconds, f"{expected} runs to end", interval=0.5)

    def slot_holders(self) -> list[tuple[str, str]]:
        rows = self.sql("SELECT tag, task_run_id FROM concurrency_slot_holders")
        return [(tag, str(UUID(str(run_id)))) for tag, run_id in rows]

    def decisions(self, run_id: UUID | str) -> list[dict[str, Any]]:
        """Return the kept decisions of one run, oldest first."""
        rows = self.sql(
            "SELECT proposed_type, proposed_name, status, rule, reason FROM decisions "
            "WHERE run_id = :run_id ORDER BY id",
            run_id=_uuid_param(self.database_url, run_id),
        )
        names = ("proposed_type", "proposed_name", "status", "rule", "reason")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def queued_jobs(self) -> dict[str, int]:
        """Return the number of entries in every task key's queue in Redis."""
        client = self.redis()
        try:
            pattern = f"{self.key_prefix}:queue:*"
            return {name.decode(): client.zcard(name) for name in client.scan_iter(match=pattern)}
        finally:
            client.close()


def _uuid_param(database_url: str, run_id: UUID | str) -> Any:
    # SQLAlchemy's Uuid type stores 32 hex digits on SQLite and a native uuid on PostgreSQL.
    value = UUID(str(run_id))
    return value.hex if database_url.startswith("sqlite") else value


async def _fetch(database_url: str, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(query), params)
            return [tuple(row) for row in result.fetchall()]
    finally:
        await engine.dispose()


def executions(log_path: Path) -> dict[str, int]:
    """Count the execution lines that `tests.faults.tasks` appended, by label."""
    counts: dict[str, int] = {}
    if not log_path.exists():
        return counts
    for line in log_path.read_text().splitlines():
        label = line.split(" ", 1)[0]
        counts[label] = counts.get(label, 0) + 1
    return counts
