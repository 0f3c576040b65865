"""Measure `.delay()` to result latency and `.map()` throughput on a private stack.

Run: ``/work/venv/bin/python -m tests.workers.measure_latency [runs] [map_size]``. It starts
a private redis-server, a service process on SQLite and one worker process, all on
loopback, prints the figures and stops everything it started.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import workers.client
from tests.e2e_helpers import TASK_MODULES_DIR, Stack
from tests.servers import RedisServer
from workers import wait_all

sys.path.insert(0, str(TASK_MODULES_DIR))
import e2e_tasks  # noqa: E402


def main(runs: int, map_size: int) -> None:
    redis_server = RedisServer().start()
    folder = Path(tempfile.mkdtemp(prefix="taskgate-measure-"))
    stack = Stack(
        redis_url=redis_server.url,
        database_url=f"sqlite+aiosqlite:///{folder / 'taskgate.db'}",
        home=folder,
        overrides={"TASKGATE_LOG_LEVEL": "WARNING", "TG_TEST_OUTPUT": str(folder)},
    )
    try:
        stack.start_service()
        stack.start_worker(["e2e_tasks"], "--concurrency", "50")
        workers.client.configure(stack.settings())
        e2e_tasks.add.delay(0, 0).result(timeout=60)

        latencies = []
        for item in range(runs):
            started = time.perf_counter()
            e2e_tasks.add.delay(item, 1).result(timeout=60)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        print(
            f"delay->result, {runs} sequential runs: median {statistics.median(latencies):.1f} ms, "
            f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.1f} ms, max {latencies[-1]:.1f} ms"
        )

        started = time.perf_counter()
        futures = e2e_tasks.add.map(range(map_size))
        submitted = time.perf_counter() - started
        done, pending = wait_all(futures, timeout=600)
        elapsed = time.perf_counter() - started
        print(
            f"map of {map_size} runs, 1 worker, concurrency 50: submitted in {submitted:.2f} s, "
            f"all done in {elapsed:.2f} s ({map_size / elapsed:.0f} runs/s), pending {len(pending)}"
        )
    finally:
        stack.stop_all()
        redis_server.stop()


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100,
        int(sys.argv[2]) if len(sys.argv) > 2 else 1000,
    )
