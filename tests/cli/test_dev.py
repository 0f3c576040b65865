"""`taskgate dev` starts a whole stack and Ctrl-C stops every process it started."""

from __future__ import annotations

import signal
import subprocess

import psutil
import pytest

from tests.cli.helpers import REPO_ROOT, cli_environment, taskgate_command

pytestmark = pytest.mark.e2e

# Guards against a hung command; no test asserts on how long a command takes.
STOP_TIMEOUT_SECONDS = 300


def read_until_ready(process: subprocess.Popen[str]) -> list[str]:
    """Return dev's output lines up to its ready line; fail if it exits first."""
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if "is ready" in line:
            return lines
    pytest.fail(f"taskgate dev exited before it was ready:\n{''.join(lines)}")


def test_dev_stops_cleanly_on_sigint(tmp_path):
    environment = cli_environment(tmp_path)
    process = subprocess.Popen(
        taskgate_command("dev", "tests.cli.sample_tasks", "--processes", "2"),
        env=environment,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        read_until_ready(process)
        descendants = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in descendants)

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=STOP_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Redis, the service, the worker supervisor and its two worker processes.
    assert len(descendants) >= 5, names
    assert "redis-server" in names
    assert "server" in names
    assert process.returncode == 0, output
    assert "taskgate dev stopped" in output
    assert "Traceback" not in output
    left = [child.pid for child in descendants if _alive(child)]
    assert left == [], f"processes left behind: {left}"
    assert not (tmp_path / "redis" / "url").exists()


def _alive(child: psutil.Process) -> bool:
    try:
        return child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
