"""Settings for one CLI command, checked up front so a bad value fails in one line."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from pydantic import ValidationError

from queue_server.cli.errors import CliError
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

SUPPORTED_DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# Schemes people often write, and the driver URL that taskgate needs instead.
DATABASE_SCHEME_FIXES = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
}
REDIS_PING_TIMEOUT_SECONDS = 3.0


def load_settings(**overrides: object) -> Settings:
    """Read the TASKGATE_* settings, with command-line overrides, and check both URLs' form."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as error:
        raise CliError(_describe_validation_error(error)) from None
    check_database_url(settings.resolved_database_url())
    if settings.redis_url:
        check_redis_url_form(settings.redis_url)
    return settings


def _describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    value = first.get("input")
    return (
        f"invalid setting TASKGATE_{field.upper()}={value!r}: {first['msg']}; "
        "fix the environment variable or the option"
    )


def check_database_url(url: str) -> None:
    """Raise CliError unless the URL names SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in SUPPORTED_DATABASE_DRIVERS:
        return
    supported = " or ".join(f"{name}://" for name in SUPPORTED_DATABASE_DRIVERS)
    suggestion = DATABASE_SCHEME_FIXES.get(scheme)
    fix = f"use {suggestion}:// instead" if suggestion else f"use {supported}"
    shown = scheme or "(none)"
    raise CliError(f"invalid database URL scheme {shown!r} in TASKGATE_DATABASE_URL: {fix}")


def check_redis_url_form(url: str) -> None:
    """Raise CliError if the Redis URL cannot be parsed."""
    from queue_server.redis_conn import parse_redis_url  # noqa: PLC0415

    try:
        parse_redis_url(url)
    except ValueError as error:
        raise CliError(f"{error} in TASKGATE_REDIS_URL; fix the URL") from None


def masked(url: str) -> str:
    """Return the URL with any password hidden."""
    from queue_server.redis_conn import mask_url  # noqa: PLC0415

    return mask_url(url)


def check_redis_reachable(url: str) -> None:
    """PING the Redis at the URL; raise CliError naming the URL and the fix if that fails."""
    asyncio.run(_ping(url))


async def _ping(url: str) -> None:
    import redis.exceptions  # noqa: PLC0415

    from queue_server.redis_conn import connect  # noqa: PLC0415

    client = connect(
        url,
        socket_connect_timeout=REDIS_PING_TIMEOUT_SECONDS,
        socket_timeout=REDIS_PING_TIMEOUT_SECONDS,
    )
    try:
        await client.ping()
    except redis.exceptions.AuthenticationError as error:
        raise CliError(
            f"Redis at {masked(url)} rejected the credentials ({error}); "
            "fix the user or password in TASKGATE_REDIS_URL"
        ) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
        reason = _short_reason(error)
        raise CliError(
            f"cannot connect to Redis at {masked(url)} ({reason}); start Redis there, "
            "fix TASKGATE_REDIS_URL, or unset it to use an embedded Redis"
        ) from None
    finally:
        await client.aclose()


def _short_reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "refused" in text.lower() or "Error 111 " in text or "Connect call failed" in text:
        return "connection refused"
    return text.rstrip(".")
