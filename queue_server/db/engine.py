"""The database handle: async engines, sessions and the write transaction.

SQLite and PostgreSQL differ here and nowhere else:

- SQLite runs in WAL mode, so readers and the one writer do not block each other. Every write
  transaction starts with `BEGIN IMMEDIATE`, which takes the database-wide write lock
  up front; a transaction that only later upgraded its read lock could fail with
  "database is locked" halfway through a batch. Writers in one process also queue
  on an asyncio lock, so they do not spin in SQLite's busy handler against each other.
  SQLite is called in the event loop's thread (`sqlite_inline`), which awaits a
  lock held by another process instead of blocking the loop.
- PostgreSQL runs at READ COMMITTED through asyncpg; a transition locks its run row
  with `SELECT ... FOR UPDATE`, which the repositories do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from queue_server.db.sqlite_inline import connect_inline

logger = logging.getLogger(__name__)

# Milliseconds a SQLite connection waits for another process's write lock before it
# fails with "database is locked".
DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Async engines and sessions for one database URL.

    `write_session()` opens the transaction a batch of transitions runs in;
    `read_session()` opens a plain transaction for reads. Call `dispose()` on shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_busy_timeout_ms: int = DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
        pool_size: int = 10,
        echo: bool = False,
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"database URL {make_url(url).render_as_string()} is not supported; "
                "use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self.write_engine = self._create_engine(
            immediate=True, busy_timeout_ms=sqlite_busy_timeout_ms, pool_size=pool_size, echo=echo
        )
        self.read_engine = (
            self._create_engine(
                immediate=False,
                busy_timeout_ms=sqlite_busy_timeout_ms,
                pool_size=pool_size,
                echo=echo,
            )
            if self.is_sqlite
            else self.write_engine
        )
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _create_engine(
        self, *, immediate: bool, busy_timeout_ms: int, pool_size: int, echo: bool
    ) -> AsyncEngine:
        options: dict[str, Any] = {"echo": echo}
        if self.is_postgres:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        if self.is_sqlite:
            options["async_creator"] = _inline_creator(self.url, busy_timeout_ms)
        engine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            _configure_sqlite(engine, immediate=immediate)
        return engine

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        """Open a write transaction; the caller commits, anything else rolls back.

        On SQLite the transaction holds the database write lock from its first statement.
        """
        if self._write_lock is None:
            async with self._write_sessions() as session:
                yield session
            return
        async with self._write_lock, self._write_sessions() as session:
            yield session

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """Open a read-only session; on SQLite it never takes the write lock."""
        async with self._read_sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def _inline_creator(url: str, busy_timeout_ms: int) -> Callable[[], Awaitable[Any]]:
    """Return the connection factory of a SQLite URL: SQLite called in the loop's thread.

    See `queue_server.db.sqlite_inline`; a lock wait of up to `busy_timeout_ms` is
    awaited there instead of blocking the event loop.
    """
    parsed = make_url(url)
    path = parsed.database or ":memory:"
    uri = str(parsed.query.get("uri", "")).lower() in ("true", "1")

    async def connect() -> Any:
        return await connect_inline(path, busy_timeout_seconds=busy_timeout_ms / 1000, uri=uri)

    return connect


def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    """Set WAL mode on every connection, and choose how BEGIN reads.

    pysqlite would otherwise open transactions itself, lazily and deferred, which also
    breaks SAVEPOINT; with its own transaction handling off, SQLAlchemy emits BEGIN.
    The busy timeout is kept by the connection itself (`sqlite_inline`).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)
