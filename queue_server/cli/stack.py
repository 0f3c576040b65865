"""A whole taskgate on one machine: Redis, one service and worker processes.

`taskgate dev` and `taskgate demo` build one of these. Redis is the embedded one
unless TASKGATE_REDIS_URL is set; the service and the workers are child processes
running `taskgate server` and `taskgate worker`, each in a session of its own, so a
terminal's Ctrl-C reaches only the command that owns them. That command stops them
in order (workers, then the service, then Redis) and kills whatever is left of each
child's process group, so nothing outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from queue_server.cli.errors import CliError
from queue_server.embedded import EmbeddedRedis, EmbeddedRedisError
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

STOP_SIGNAL_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1


@dataclass
class ChildProcess:
    """A `taskgate` subcommand run as a child in its own process group."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> bool:
        """Send the signal to every process in the child's group; False if none is left."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def group_alive(self) -> bool:
        return self.signal_group(0)

    def stop(self, grace_seconds: float) -> None:
        """Stop the child: SIGINT, then SIGTERM, then SIGKILL of its whole process group."""
        steps = ((signal.SIGINT, grace_seconds), (signal.SIGTERM, STOP_SIGNAL_GRACE_SECONDS))
        for signum, wait_seconds in steps:
            if not self.signal_group(signum):
                break
            if self._wait_group(wait_seconds):
                break
            logger.warning("%s (pid %d) still running after %s", self.name, self.pid, signum.name)
        else:
            logger.warning("killing %s (pid %d) and its process group", self.name, self.pid)
            self.signal_group(signal.SIGKILL)
        self.process.wait()

    def _wait_group(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.process.poll()
            if not self.group_alive():
                return True
            time.sleep(POLL_SECONDS)
        return False


@dataclass
class LocalStack:
    """Redis, the service and the workers of one `dev` or `demo` command."""

    settings: Settings
    log_folder: Path
    quiet: bool = False
    redis: EmbeddedRedis | None = None
    redis_url: str = ""
    extra_environment: dict[str, str] = field(default_factory=dict)
    children: list[ChildProcess] = field(default_factory=list)

    def start_redis(self) -> str:
        """Use TASKGATE_REDIS_URL if set, else start the embedded Redis; return the URL."""
        if self.settings.redis_url:
            self.redis_url = self.settings.redis_url
            return self.redis_url
        try:
            self.redis = EmbeddedRedis(home=self.settings.home_path).start()
        except EmbeddedRedisError as error:
            raise CliError(str(error)) from None
        self.redis_url = self.redis.url
        return self.redis_url

    def child_environment(self) -> dict[str, str]:
        """Return the environment of every child: the parent's, plus the resolved URLs."""
        environment = dict(os.environ)
        environment["TASKGATE_REDIS_URL"] = self.redis_url
        environment["TASKGATE_DATABASE_URL"] = self.settings.resolved_database_url()
        environment["TASKGATE_HOME"] = str(self.settings.home_path)
        # Console scripts leave the working directory off sys.path; children need it
        # to import the user's task modules.
        paths = [os.getcwd(), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        environment.update(self.extra_environment)
        return environment

    def spawn(self, name: str, arguments: list[str]) -> ChildProcess:
        """Start `taskgate <arguments>` as a child; its output goes to <log folder>/<name>.log."""
        self.log_folder.mkdir(parents=True, exist_ok=True)
        log_path = self.log_folder / f"{name}.log"
        command = [sys.executable, "-m", "queue_server.cli", *arguments]
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file if self.quiet else None,
                stderr=log_file if self.quiet else None,
                env=self.child_environment(),
                # NOTE: a child in its own session outlives this process if it is
                # killed with SIGKILL; only SIGINT and SIGTERM stop the stack in order.
                start_new_session=True,
            )
        child = ChildProcess(name=name, process=process)
        self.children.append(child)
        logger.info("started %s (pid %d): taskgate %s", name, process.pid, " ".join(arguments))
        return child

    def exited_child(self) -> ChildProcess | None:
        """Return a child that has exited, if any."""
        return next((child for child in self.children if not child.running()), None)

    def stop(self) -> None:
        """Stop the workers, then the service, then the embedded Redis."""
        grace = self.settings.shutdown_grace + STOP_SIGNAL_GRACE_SECONDS
        for child in reversed(self.children):
            child.stop(grace)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
