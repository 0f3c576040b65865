"""Run the `taskgate` command in subprocesses, as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# Guards against a hung command; no test asserts on how long a command takes.
COMMAND_TIMEOUT_SECONDS = 600


def cli_environment(home: Path, **settings: str) -> dict[str, str]:
    """Return an environment for `taskgate` with a private data folder and short waits."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("TASKGATE_")
    }
    environment.update(
        {
            "TASKGATE_HOME": str(home),
            "TASKGATE_HTTP_PORT": str(free_port()),
            "TASKGATE_HEARTBEAT_TTL": "3",
            "TASKGATE_SHUTDOWN_GRACE": "2",
            "TASKGATE_REQUEST_TIMEOUT": "5",
            "TASKGATE_FUTURE_POLL_INTERVAL": "0.2",
            "TASKGATE_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "0.2",
            "PYTHONPATH": str(REPO_ROOT),
            # Wide enough that rich never wraps a table row.
            "COLUMNS": "200",
        }
    )
    environment.update(settings)
    return environment


def taskgate_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "queue_server.cli", *arguments]


def run_taskgate(
    *arguments: str, environment: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `taskgate ARGUMENTS` to completion and return its output."""
    return subprocess.run(
        taskgate_command(*arguments),
        env=environment,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )


def summary_value(output: str, label: str) -> str | None:
    """Return the value of one row of a rich two-column table, or None if absent."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*([^│]+?)\s*│", output)
    return match.group(1) if match else None


def table_row(output: str, first_cell: str) -> list[str] | None:
    """Return the cells of the table row whose first cell is `first_cell`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    return None
