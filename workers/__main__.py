"""``python -m workers MODULE...``: run a worker process (or N of them) for the tasks in MODULEs."""

from __future__ import annotations

import argparse
import logging
import sys

from redis.exceptions import RedisError

from queue_server.redis_conn import mask_url
from queue_server.settings import Settings
from workers.runtime import run_worker
from workers.supervisor import run_supervisor


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, configure logging and run until stopped."""
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("modules", nargs="+", help="modules whose @task functions to serve")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=settings.worker_concurrency,
        help="runs one worker process executes at once (default: TASKGATE_WORKER_CONCURRENCY)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes to run under a supervisor"
    )
    parser.add_argument(
        "--task-key",
        action="append",
        dest="task_keys",
        help="serve only this task key; repeat for more (default: every task of the modules)",
    )
    options = parser.parse_args(argv)

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    if options.concurrency < 1:
        parser.error(f"--concurrency {options.concurrency} must be at least 1")

    try:
        if options.processes > 1:
            run_supervisor(
                options.modules,
                processes=options.processes,
                concurrency=options.concurrency,
                task_keys=options.task_keys,
                settings=settings,
            )
        else:
            run_worker(
                options.modules,
                concurrency=options.concurrency,
                task_keys=options.task_keys,
                settings=settings,
            )
    except (ImportError, ValueError) as error:
        logging.getLogger("workers").error("%s", error)
        return 2
    except RedisError as error:
        # Raised when Redis refuses the connection at startup (a wrong password, say);
        # later outages are retried inside the runtime.
        where = mask_url(settings.redis_url) if settings.redis_url else "the embedded Redis"
        logging.getLogger("workers").error(
            "cannot connect to Redis at %s: %s; check TASKGATE_REDIS_URL",
            where,
            str(error).rstrip("."),
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
