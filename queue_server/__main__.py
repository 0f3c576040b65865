"""``python -m queue_server``: run one replica of the transition service.

Settings come from TASKGATE_* environment variables. ``--no-http`` runs the replica
without the operator HTTP API, so several replicas can share one host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from redis.exceptions import RedisError

from queue_server.app import serve
from queue_server.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, configure logging and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m queue_server", description=__doc__)
    parser.add_argument("--no-http", action="store_true", help="do not start the HTTP API")
    options = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(settings, http=not options.no_http))
    except ValueError as error:
        logging.getLogger("queue_server").error("invalid settings: %s", error)
        return 2
    except (RedisError, OSError) as error:
        logging.getLogger("queue_server").error("service failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
