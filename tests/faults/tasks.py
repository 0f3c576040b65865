"""Tasks that the fault tests submit and that their worker processes serve.

Each task appends one line ``<label> <pid>`` to a log file named by its caller before
it does anything else. The line is a side effect outside taskgate, so counting lines
per label counts real executions, including those cut short by a killed worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from workers import task

# Tag of the concurrency limit that the crash tests watch.
SLOT_TAG = "faults-slot"


def record_execution(log_path: str, label: str) -> int:
    """Append ``<label> <pid>`` to the log; return how many lines the label had before."""
    path = Path(log_path)
    previous = 0
    if path.exists():
        previous = sum(1 for line in path.read_text().splitlines() if line.split(" ")[0] == label)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # One write of a short line with O_APPEND lands whole, even from many processes.
        os.write(descriptor, f"{label} {os.getpid()}\n".encode())
    finally:
        os.close(descriptor)
    return previous


@task(retries=2, tags=[SLOT_TAG])
def hold_first_attempt(log_path: str, label: str, hold_seconds: float) -> dict[str, object]:
    """Block on the first execution only, long enough for a test to kill or freeze it."""
    previous = record_execution(log_path, label)
    if previous == 0:
        time.sleep(hold_seconds)
    return {"label": label, "executions_before": previous}


@task(retries=0, tags=[SLOT_TAG])
def hold_without_retries(log_path: str, label: str, hold_seconds: float) -> str:
    """Block long enough to be killed; with no retries, a killed run ends Crashed."""
    record_execution(log_path, label)
    time.sleep(hold_seconds)
    return label


@task(retries=1)
async def block_event_loop(log_path: str, label: str, seconds: float) -> str:
    """Block the worker's event loop with a synchronous sleep, as careless async code does."""
    record_execution(log_path, label)
    time.sleep(seconds)  # noqa: ASYNC251 - the blocking call is what the test needs
    return label


@task(retries=0)
def echo(log_path: str, label: str, payload: dict[str, object], sleep_seconds: float = 0.0):
    """Return the parameters it got, after an optional pause; it has no retries."""
    record_execution(log_path, label)
    if sleep_seconds:
        time.sleep(sleep_seconds)
    return {"label": label, "payload": payload}


# Tag of the concurrency limit that the soak test sets below its total worker slots.
SOAK_TAG = "faults-soak"


@task(retries=30, retry_delay_seconds=0, tags=[SOAK_TAG])
def soak_step(log_path: str, label: str, sleep_seconds: float) -> str:
    """A short run for the soak test; its many retries outlast repeated worker kills."""
    record_execution(log_path, label)
    time.sleep(sleep_seconds)
    return label


def _shared_cache_key(parameters: dict[str, object]) -> str:
    return f"faults-shared-{parameters['key']}"


@task(cache_key_fn=_shared_cache_key, cache_isolation=True, retries=0)
def cached_once(log_path: str, key: str, sleep_seconds: float) -> str:
    """An expensive computation whose result every run with the same key shares."""
    record_execution(log_path, key)
    time.sleep(sleep_seconds)
    return f"value of {key}"


@task(tags=["faults-closed"])
def behind_closed_limit(log_path: str, label: str) -> str:
    """A task whose tag the bad-input test limits to 0 concurrent runs."""
    record_execution(log_path, label)
    return label


@task
def takes_one_argument(log_path: str, label: str) -> str:
    """A plain task for the bad-input tests; it never runs when its job is corrupt."""
    record_execution(log_path, label)
    return label


def _key_of_requested_length(parameters: dict[str, object]) -> str:
    return "k" * int(parameters["length"])  # type: ignore[arg-type]


@task(cache_key_fn=_key_of_requested_length)
def with_cache_key_length(length: int) -> int:
    """A task whose cache key is as long as its caller asks."""
    return length
