"""Tasks the end-to-end tests run in real worker processes.

Side effects go to files under the folder named by TG_TEST_OUTPUT, one line per
execution, so a test counts executions across processes without sharing memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from workers import task


def record(name: str, line: str = "") -> None:
    """Append one line to the side-effect file `name`, with the pid and a timestamp."""
    folder = Path(os.environ.get("TG_TEST_OUTPUT", "."))
    with (folder / f"{name}.log").open("a") as file:
        file.write(json.dumps({"pid": os.getpid(), "at": time.time(), "line": line}) + "\n")


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
async def multiply(x: float, y: float) -> float:
    await asyncio.sleep(0.01)
    return x * y


@task
def echo(value: object) -> object:
    return value


@task
def count_execution(item: int) -> int:
    record("executions", str(item))
    return item


@task(retries=3, retry_delay_seconds=[0.5, 1.0, 1.5], retry_jitter_factor=0.5)
def always_fails(label: str) -> None:
    record("always_fails", label)
    raise RuntimeError(f"attempt failed for {label}")


class PermanentError(ValueError):
    """An error the retry condition refuses to retry."""


@task(retries=3, retry_condition_fn=lambda error: not isinstance(error, PermanentError))
def fails_permanently(label: str) -> None:
    record("fails_permanently", label)
    raise PermanentError(f"permanent failure for {label}")


@task(cache_key_fn=lambda parameters: f"cached-{parameters['x']}")
def cached_square(x: int) -> int:
    record("cached_square", str(x))
    return x * x


@task(cache_key_fn=lambda parameters: f"refresh-{parameters['x']}", refresh_cache=True)
def refreshed_square(x: int) -> int:
    record("refreshed_square", str(x))
    return x * x


@task(cache_key_fn=lambda parameters: f"short-{parameters['x']}", cache_expiration=1.0)
def short_cached_square(x: int) -> int:
    record("short_cached_square", str(x))
    return x * x


@task
def note_start(label: str) -> float:
    started = time.time()
    record("note_start", label)
    return started


@task(tags=["e2e-limited"])
async def limited(item: int) -> int:
    await asyncio.sleep(0.3)
    return item


@task(timeout_seconds=0.5, retries=1)
async def too_slow(label: str) -> None:
    record("too_slow", label)
    await asyncio.sleep(30)


@task(retries=1)
async def sleeper(seconds: float) -> float:
    record("sleeper", str(seconds))
    await asyncio.sleep(seconds)
    return seconds


@task
async def wait_for_file(path: str) -> str:
    record("wait_for_file", path)
    # The file is made by another process, so there is no event to wait on: poll it.
    while not os.path.exists(path):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    return path


@task
def fails_with_key_error(key: str) -> None:
    raise KeyError(key)


@task(persist_result=False)
def unpersisted(x: int) -> int:
    return x + 100


@task(serializer="pickle")
def pickled(value: object) -> object:
    return value


@task(retries=1)
async def blocks_event_loop(seconds: float) -> float:
    record("blocks_event_loop", str(seconds))
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop on purpose
    return seconds
