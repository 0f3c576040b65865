"""Tasks the CLI tests run: one that fails its first attempt, one no worker serves."""

from __future__ import annotations

import os
from pathlib import Path

from workers import task

# Folder where `flaky` records that a token's first attempt has happened.
FAIL_ONCE_FOLDER_VARIABLE = "TASKGATE_TEST_FAIL_ONCE_DIR"


@task(task_key="tests.cli.flaky", retries=2, retry_delay_seconds=0.1)
def flaky(token: str) -> str:
    """Fail the first attempt for each token, then return the token."""
    marker = Path(os.environ[FAIL_ONCE_FOLDER_VARIABLE]) / token
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"first attempt for {token} fails on purpose")
    return token


@task(task_key="tests.cli.unserved")
def unserved(value: int) -> int:
    """Return the value; the tests start no worker for this task key."""
    return value
