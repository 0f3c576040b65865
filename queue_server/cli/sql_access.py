"""Run one coroutine against the TransitionService on the settings' database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from queue_server.cli.errors import CliError
from queue_server.settings import Settings

T = TypeVar("T")


def with_service(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database, call `action(service)`, and close the database.

    A RequestError (an unknown run id or tag) and a database that cannot be reached
    become a CliError naming the value.
    """
    return asyncio.run(_run(settings, action))


async def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from queue_server.db.engine import Database  # noqa: PLC0415
    from queue_server.errors import RequestError, StorageFault  # noqa: PLC0415
    from queue_server.service import TransitionService  # noqa: PLC0415

    url = settings.resolved_database_url()
    shown = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite") and not settings.home_path.exists():
        raise CliError(
            f"no database at {shown}; run `taskgate db upgrade` or start `taskgate dev` first"
        )
    database = Database(url)
    try:
        return await action(TransitionService(database, settings))
    except RequestError as error:
        raise CliError(f"{error.message}; check the value and try again") from None
    except (StorageFault, OSError) as error:
        raise CliError(
            f"cannot read the database at {shown} ({_first_line(error)}); check that it runs, "
            "that TASKGATE_DATABASE_URL is right, and run `taskgate db upgrade`"
        ) from None
    finally:
        await database.dispose()


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
