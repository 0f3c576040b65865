"""Run N worker processes, restart any that dies, stop them all on SIGTERM or SIGINT.

Each worker is a child process started with ``python -m workers``, so it imports the
task modules itself and shares nothing with the supervisor but its settings, which it
reads from the same TASKGATE_* environment.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from queue_server.settings import Settings

logger = logging.getLogger(__name__)

# Seconds between checks of the children.
CHECK_INTERVAL_SECONDS = 0.5
# A worker that dies sooner than this after its start is restarted only after a pause,
# so a worker that cannot start (a broken module, say) does not spin.
FAST_FAILURE_SECONDS = 5.0
RESTART_PAUSE_SECONDS = 2.0


@dataclass
class WorkerSlot:
    """One of the N worker processes, restarted in place when it dies."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    not_before: float = field(default=0.0)


def worker_command(modules: list[str], concurrency: int, task_keys: list[str] | None) -> list[str]:
    """Return the command line that starts one worker process."""
    command = [sys.executable, "-m", "workers", *modules, "--concurrency", str(concurrency)]
    for task_key in task_keys or []:
        command += ["--task-key", task_key]
    return command


def run_supervisor(
    modules: list[str],
    *,
    processes: int,
    concurrency: int,
    task_keys: list[str] | None,
    settings: Settings,
) -> None:
    """Start `processes` workers and keep them running until SIGTERM or SIGINT. Blocks.

    On a stop signal every worker gets SIGTERM, so each stops gracefully within the
    shutdown grace. A worker still alive 10 s after that gets SIGKILL.
    """
    if processes < 1:
        raise ValueError(f"processes={processes} must be at least 1")
    command = worker_command(modules, concurrency, task_keys)
    slots = [WorkerSlot(index) for index in range(processes)]
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        logger.info(
            "supervisor: %s received; stopping %d workers", signal.Signals(signum).name, processes
        )

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        while not stopping:
            for slot in slots:
                _keep_alive(slot, command)
            time.sleep(CHECK_INTERVAL_SECONDS)
    finally:
        _stop_all(slots, settings.shutdown_grace + 10.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _keep_alive(slot: WorkerSlot, command: list[str]) -> None:
    process = slot.process
    if process is not None and process.poll() is None:
        return
    now = time.monotonic()
    if process is not None:
        lived = now - slot.started
        logger.warning(
            "supervisor: worker %d (pid %d) exited with code %s after %.1f s; restarting it",
            slot.index,
            process.pid,
            process.returncode,
            lived,
        )
        slot.restarts += 1
        slot.process = None
        if lived < FAST_FAILURE_SECONDS:
            slot.not_before = now + RESTART_PAUSE_SECONDS
    if now < slot.not_before:
        return
    slot.process = subprocess.Popen(command, env=os.environ.copy())
    slot.started = now
    logger.info("supervisor: worker %d started, pid %d", slot.index, slot.process.pid)


def _stop_all(slots: list[WorkerSlot], wait_seconds: float) -> None:
    running = [slot.process for slot in slots if slot.process and slot.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("supervisor: worker pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()
