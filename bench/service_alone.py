"""The transition service alone: `TransitionService.apply_batch` driven in process.

Each run makes four transitions through three requests: ``create_task_run``
(Scheduled), ``claim_and_start`` (Pending, then Running) and ``propose_state``
(Completed, with the claim token). The requests go to the service in batches of
``--batch`` requests of one kind, as the batch loop would apply them, with no Redis
and no transport in between.

Usage::

    python -m bench.service_alone --database URL --batch 100 --runs 300

The database is used as given: its schema is upgraded, and every measurement adds
fresh runs to it. Without ``--database`` a new SQLite file in a temporary folder is
used and removed afterwards.

Two rates are printed: transitions per second of wall-clock time, and transitions
per CPU-second of this process (`time.process_time`, every thread, so SQLite's work
in aiosqlite's thread counts but a PostgreSQL server's work does not). Only the
`apply_batch` calls are timed. On a machine shared with other work the CPU figure is
the steadier one.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database
from queue_server.protocol import Reply, Request
from queue_server.service import TransitionService
from queue_server.settings import Settings

TRANSITIONS_PER_RUN = 4
TASK_KEY = "bench.service_alone.noop"
CLIENT_ID = "bench-service-alone"
WORKER_ID = "bench-service-alone-worker"
WARM_UP_RUNS = 20


@dataclass
class Timing:
    """Time spent inside `apply_batch`: wall-clock and CPU seconds."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    transitions: int = 0

    @property
    def per_second(self) -> float:
        return self.transitions / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.transitions / self.cpu_seconds if self.cpu_seconds else 0.0


def request(op: str, args: dict[str, Any]) -> Request:
    return Request(request_id=uuid4(), client_id=CLIENT_ID, op=op, args=args)


def create_request() -> Request:
    run = {
        "id": str(uuid4()),
        "task_key": TASK_KEY,
        "parameters": {"serializer": "json", "value": {"x": 1, "y": 2}},
    }
    return request("create_task_run", {"run": run, "transition_id": str(uuid4())})


def claim_request(created: dict[str, Any]) -> Request:
    return request(
        "claim_and_start",
        {
            "run_id": created["run"]["id"],
            "claimed_state_id": created["orchestration"]["state"]["id"],
            "worker_id": WORKER_ID,
            "claim_transition_id": str(uuid4()),
            "start_transition_id": str(uuid4()),
        },
    )


def complete_request(started: dict[str, Any]) -> Request:
    running = started["start"]["state"]
    state = {
        "type": "COMPLETED",
        "data": {"type": "result", "serializer": "json", "value": 3},
        "state_details": {"claim_token": running["state_details"]["claim_token"]},
    }
    return request(
        "propose_state",
        {
            "run_id": started["start"]["run_id"],
            "state": state,
            "transition_id": str(uuid4()),
            "worker_id": WORKER_ID,
        },
    )


def orchestration_results(op: str, result: dict[str, Any]) -> list[dict[str, Any] | None]:
    """Return the orchestration results inside one request's result."""
    if op == "create_task_run":
        return [result["orchestration"]]
    if op == "claim_and_start":
        return [result["claim"], result["start"]]
    return [result]


def accepted_results(op: str, replies: list[tuple[str, Reply]]) -> list[dict[str, Any]]:
    """Return each reply's result; raise unless every transition got ACCEPT."""
    results = []
    for _, reply in replies:
        if not reply.ok:
            raise RuntimeError(f"{op} request {reply.request_id} failed: {reply.error}")
        result = reply.result
        for decision in orchestration_results(op, result):
            if decision is None or decision["status"] != "ACCEPT":
                raise RuntimeError(f"{op} request {reply.request_id} was not accepted: {decision}")
        results.append(result)
    return results


async def apply_timed(
    service: TransitionService, requests: list[Request], timing: Timing
) -> list[tuple[str, Reply]]:
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    outcome = await service.apply_batch(requests)
    timing.cpu_seconds += time.process_time() - cpu_start
    timing.wall_seconds += time.perf_counter() - wall_start
    return outcome.replies


async def drive_runs(service: TransitionService, runs: int, batch: int) -> Timing:
    """Take `runs` runs through their four transitions in batches of `batch` requests."""
    timing = Timing()
    for first in range(0, runs, batch):
        count = min(batch, runs - first)
        creates = [create_request() for _ in range(count)]
        created = accepted_results("create_task_run", await apply_timed(service, creates, timing))

        claims = [claim_request(result) for result in created]
        started = accepted_results("claim_and_start", await apply_timed(service, claims, timing))

        completes = [complete_request(result) for result in started]
        accepted_results("propose_state", await apply_timed(service, completes, timing))
        timing.transitions += count * TRANSITIONS_PER_RUN
    return timing


async def measure(url: str, runs: int, batch: int) -> Timing:
    await upgrade_database(url)
    database = Database(url)
    try:
        service = TransitionService(database, Settings(database_url=url, redis_url=None))
        await drive_runs(service, WARM_UP_RUNS, batch)  # imports, caches, pool connections
        return await drive_runs(service, runs, batch)
    finally:
        await database.dispose()


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service_alone", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (sqlite+aiosqlite:// or postgresql+asyncpg://) of the database "
        "to measure on; default: a new SQLite file in a temporary folder",
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="requests per apply_batch call (default 100)"
    )
    parser.add_argument(
        "--runs", type=int, default=300, help="runs taken through their four transitions "
        "(default 300)"
    )
    options = parser.parse_args(argv)
    if options.batch < 1 or options.runs < 1:
        parser.error("--batch and --runs must be 1 or more")
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    folder = None
    url = options.database
    if url is None:
        folder = Path(tempfile.mkdtemp(prefix="taskgate-service-alone-"))
        url = f"sqlite+aiosqlite:///{folder / 'taskgate.db'}"
    try:
        timing = asyncio.run(measure(url, options.runs, options.batch))
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    dialect = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    print(
        f"{dialect}, batch {options.batch}, {options.runs} runs, "
        f"{timing.transitions} transitions"
    )
    print(f"  transitions/s:              {timing.per_second:8.1f}")
    print(f"  transitions per CPU-second: {timing.per_cpu_second:8.1f}")


if __name__ == "__main__":
    main()
