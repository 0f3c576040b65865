"""The Redis URL an operator command connects to, and a client for it."""

from __future__ import annotations

from typing import Any

from queue_server.cli.config import check_redis_reachable
from queue_server.cli.errors import CliError
from queue_server.embedded import read_running_url
from queue_server.settings import Settings


def resolve_redis_url(settings: Settings) -> str:
    """Return TASKGATE_REDIS_URL, or the embedded Redis of a running `taskgate dev`.

    Raises CliError when neither exists or the Redis does not respond.
    """
    url = settings.redis_url or read_running_url(settings.home_path)
    if not url:
        raise CliError(
            "TASKGATE_REDIS_URL is not set and no `taskgate dev` is running under "
            f"{settings.home_path}; set TASKGATE_REDIS_URL or start `taskgate dev`"
        )
    check_redis_reachable(url)
    return url


def redis_client(url: str) -> Any:
    """Return an asyncio Redis client for the URL."""
    from queue_server.redis_conn import connect  # noqa: PLC0415

    return connect(url)
