"""Start real service and worker processes for end-to-end tests, and read what they did.

Every process listens on or connects to loopback only: the service binds its HTTP API to
127.0.0.1 on a free port, and both talk to the test's private Redis. Tests stop only the
processes these helpers started, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from queue_server.keys import Keys
from queue_server.settings import Settings
from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
TASK_MODULES_DIR = Path(__file__).resolve().parent / "workers" / "task_modules"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


def wait_until(
    condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns a truthy value; raise AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class Stack:
    """The environment one test's processes share: Redis, database, key prefix and settings."""

    redis_url: str
    database_url: str
    home: Path
    key_prefix: str = field(default_factory=lambda: f"tg{uuid.uuid4().hex[:8]}")
    http_port: int = field(default_factory=free_port)
    overrides: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """Return the environment of a service or worker process of this stack."""
        env = dict(os.environ)
        env.update(
            {
                "TASKGATE_REDIS_URL": self.redis_url,
                "TASKGATE_DATABASE_URL": self.database_url,
                "TASKGATE_HOME": str(self.home),
                "TASKGATE_KEY_PREFIX": self.key_prefix,
                "TASKGATE_HTTP_HOST": "127.0.0.1",
                "TASKGATE_HTTP_PORT": str(self.http_port),
                "TASKGATE_HEARTBEAT_TTL": "6",
                "TASKGATE_REQUEST_TIMEOUT": "10",
                "TASKGATE_FUTURE_POLL_INTERVAL": "0.5",
                "TASKGATE_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
                "TASKGATE_SHUTDOWN_GRACE": "10",
                "TASKGATE_LOG_LEVEL": "INFO",
                "PYTHONPATH": os.pathsep.join(
                    [str(TASK_MODULES_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")]
                ),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.overrides)
        env.update(extra)
        return env

    def settings(self) -> Settings:
        """Return the settings a client in the test process uses to reach this stack."""
        names = {name.upper(): name for name in Settings.model_fields}
        values = {
            names[key.removeprefix("TASKGATE_")]: value
            for key, value in self.env().items()
            if key.startswith("TASKGATE_") and key.removeprefix("TASKGATE_") in names
        }
        return Settings(**values)

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def start_service(self, **extra: str) -> subprocess.Popen[bytes]:
        """Start `python -m queue_server` and wait until its HTTP API responds."""
        process = self._spawn("service", [sys.executable, "-m", "queue_server"], extra)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"service exited early: {self.tail('service')}")
            try:
                return httpx.get(f"{self.http}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, READY_TIMEOUT_SECONDS, 0.1, "the service to answer /health")
        return process

    def start_worker(
        self, modules: Iterable[str], *args: str, name: str | None = None, **extra: str
    ) -> subprocess.Popen[bytes]:
        """Start `python -m workers MODULE...` and wait until its heartbeat key appears."""
        label = name or f"worker{len(self.processes)}"
        command = [sys.executable, "-m", "workers", *modules, *args]
        process = self._spawn(label, command, extra)
        wait_until(
            lambda: self._check_alive(process, label) and process.pid in self.worker_pids(),
            READY_TIMEOUT_SECONDS,
            0.1,
            f"worker {label} to write its heartbeat",
        )
        return process

    def start_supervisor(
        self, modules: Iterable[str], *args: str, **extra: str
    ) -> subprocess.Popen[bytes]:
        """Start `python -m workers ... --processes N` without waiting for its workers."""
        command = [sys.executable, "-m", "workers", *modules, *args]
        return self._spawn("supervisor", command, extra)

    def _spawn(
        self, name: str, command: list[str], extra: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = self.log_path(name).open("ab")
        process = subprocess.Popen(
            command, env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT, cwd=self.home
        )
        self.processes.append(process)
        return process

    def _check_alive(self, process: subprocess.Popen[bytes], name: str) -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}: {self.tail(name)}")
        return True

    def tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(name).read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def heartbeats(self) -> list[dict[str, Any]]:
        """Return the payloads of every live worker heartbeat of this stack."""
        client = self.redis()
        try:
            found = []
            for key in client.scan_iter(match=self.keys.worker_pattern):
                raw = client.get(key)
                if raw:
                    found.append(json.loads(raw))
            return found
        finally:
            client.close()

    def worker_pids(self) -> set[int]:
        return {beat["pid"] for beat in self.heartbeats()}

    def states(self, run_id: object) -> list[dict[str, Any]]:
        """Return the run's state history, oldest first, from the operator HTTP API."""
        response = httpx.get(f"{self.http}/runs/{run_id}/states", timeout=10)
        response.raise_for_status()
        return response.json()

    def run(self, run_id: object) -> dict[str, Any]:
        response = httpx.get(f"{self.http}/runs/{run_id}", timeout=10)
        response.raise_for_status()
        return response.json()

    def set_limit(self, tag: str, limit: int) -> None:
        response = httpx.post(
            f"{self.http}/concurrency-limits", json={"tag": tag, "limit": limit}, timeout=10
        )
        response.raise_for_status()

    def cancel(self, run_id: object) -> dict[str, Any]:
        response = httpx.post(f"{self.http}/runs/{run_id}/cancel", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Send `sig` to one process this stack started and wait for it to exit."""
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        """Stop every process this stack started, workers first, the service last."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def count_lines(path: Path) -> int:
    """Return the number of lines in a side-effect file (0 when it does not exist)."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def state_names(states: list[dict[str, Any]]) -> list[str]:
    return [state["name"] for state in states]
