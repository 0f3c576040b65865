"""A SQLite connection for SQLAlchemy's async engine that calls SQLite in the event loop's thread.

aiosqlite runs each call in its own thread and returns the result through the event
loop, and SQLAlchemy makes three or four such calls per statement. On this project's
benchmark machine that cost about 0.37 ms of wall time per statement, while SQLite
itself runs a statement on a local file in microseconds. `connect_inline` returns
an object with the methods of an aiosqlite connection that SQLAlchemy's aiosqlite
dialect calls, each of which runs SQLite at once, so a statement costs no thread hop.

The one call that may wait is a lock: `BEGIN IMMEDIATE` while another connection
writes. SQLite's own busy handler would block the event loop for that wait, so it is
turned off (`PRAGMA busy_timeout=0`) and a busy call is retried here after an
`asyncio.sleep`, with a growing delay, until `busy_timeout_seconds` have passed.

NOTE: every other statement runs to its end in the loop's thread, so a long one (a
large DELETE of the decision pruner, say) stalls the loop for as long as it takes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

FIRST_RETRY_SECONDS = 0.001
MAX_RETRY_SECONDS = 0.05


async def connect_inline(
    path: str, *, busy_timeout_seconds: float, uri: bool = False
) -> InlineConnection:
    """Open `path` (a file name, ":memory:" or, with `uri`, a file: URI) for the async engine."""
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, uri=uri
    )
    connection.execute("PRAGMA busy_timeout=0")
    return InlineConnection(connection, busy_timeout_seconds)


async def call_when_free(call: Callable[[], T], busy_timeout_seconds: float) -> T:
    """Run `call`; while SQLite reports "database is locked", sleep and run it again."""
    deadline: float | None = None
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + busy_timeout_seconds
            if now >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "database is locked" in message or "database is busy" in message


class _RunAtOnce:
    """Stands in for aiosqlite's request queue: SQLAlchemy sets the isolation level there."""

    def put_nowait(self, item: tuple[asyncio.Future, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(error)


class InlineConnection:
    """The aiosqlite connection methods SQLAlchemy's dialect uses, run in the caller's thread."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout_seconds: float) -> None:
        self._conn = connection
        # aiosqlite names the open connection `_connection` and sets it to None on close;
        # SQLAlchemy's dialect reads it to skip a commit or rollback on a closed one.
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunAtOnce()
        self.busy_timeout_seconds = busy_timeout_seconds

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> _CursorOpener:
        return _CursorOpener(self)

    async def commit(self) -> None:
        await call_when_free(self._conn.commit, self.busy_timeout_seconds)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


class _CursorOpener:
    """The result of `InlineConnection.cursor()`, which SQLAlchemy enters with `__aenter__`."""

    def __init__(self, connection: InlineConnection) -> None:
        self.connection = connection

    async def __aenter__(self) -> InlineCursor:
        return InlineCursor(self.connection._conn.cursor(), self.connection.busy_timeout_seconds)

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class InlineCursor:
    """The aiosqlite cursor methods SQLAlchemy's dialect uses, run in the caller's thread."""

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout_seconds: float) -> None:
        self._cursor = cursor
        self.busy_timeout_seconds = busy_timeout_seconds

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await call_when_free(
            lambda: self._cursor.execute(sql, parameters), self.busy_timeout_seconds
        )
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)
        await call_when_free(
            lambda: self._cursor.executemany(sql, rows), self.busy_timeout_seconds
        )
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()
