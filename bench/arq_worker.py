"""A plain arq worker process with one no-op job function, the floor taskgate is measured against.

Run as ``python -m bench.arq_worker --redis-url URL --max-jobs N --poll-delay SECONDS``.
It configures no logging, so arq's per-job INFO lines are not written. Skipping that
work can only make this baseline faster than a worker started with the ``arq`` command.
"""

from __future__ import annotations

import argparse
import os

from arq.connections import RedisSettings
from arq.worker import Worker

READY_KEY_PREFIX = "bench:ready:"


async def noop(ctx: dict) -> None:
    """Do nothing, so the benchmark measures the queue and not the job."""


async def announce_ready(ctx: dict) -> None:
    """Set ``bench:ready:<pid>`` once this worker has connected, for the driver to wait on."""
    await ctx["redis"].set(f"{READY_KEY_PREFIX}{os.getpid()}", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="redis:// URL of a loopback server")
    parser.add_argument("--max-jobs", type=int, default=10, help="jobs run at once")
    parser.add_argument("--poll-delay", type=float, default=0.5, help="seconds between queue polls")
    arguments = parser.parse_args()

    worker = Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(arguments.redis_url),
        max_jobs=arguments.max_jobs,
        poll_delay=arguments.poll_delay,
        on_startup=announce_ready,
        handle_signals=True,
    )
    worker.run()


if __name__ == "__main__":
    main()
