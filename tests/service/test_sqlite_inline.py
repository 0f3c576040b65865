"""SQLite called in the event loop's thread: a lock wait is awaited, never blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database


async def database_at(path: Path, busy_timeout_ms: int) -> Database:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url)
    return Database(url, sqlite_busy_timeout_ms=busy_timeout_ms)


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Take the database's write lock from another connection, as another process would."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


async def count_ticks(stop: asyncio.Event) -> int:
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def write_once(database: Database) -> float:
    started = time.monotonic()
    async with database.write_session() as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        await session.execute(text("INSERT INTO probe VALUES (1)"))
        await session.commit()
    return time.monotonic() - started


async def test_locked_database_is_awaited_without_blocking_the_loop(tmp_path: Path) -> None:
    database = await database_at(tmp_path / "locked.db", busy_timeout_ms=10_000)
    holder = hold_write_lock(tmp_path / "locked.db")
    stop = asyncio.Event()
    ticker = asyncio.create_task(count_ticks(stop))
    try:
        writer = asyncio.create_task(write_once(database))
        await asyncio.sleep(0.3)
        assert not writer.done()
        holder.rollback()
        waited = await writer
    finally:
        stop.set()
        holder.close()
        await database.dispose()

    assert waited >= 0.3
    # The loop kept running while the writer waited for the lock. At 10 ms per tick,
    # 0.3 s of waiting gives about 30 ticks, and a blocked loop would give one or two.
    assert await ticker >= 10


async def test_lock_held_past_the_timeout_fails(tmp_path: Path) -> None:
    database = await database_at(tmp_path / "stuck.db", busy_timeout_ms=200)
    holder = hold_write_lock(tmp_path / "stuck.db")
    try:
        with pytest.raises(OperationalError, match="locked"):
            await write_once(database)
    finally:
        holder.close()
        await database.dispose()


async def test_rows_written_inline_are_read_back(tmp_path: Path) -> None:
    database = await database_at(tmp_path / "rows.db", busy_timeout_ms=1000)
    try:
        async with database.write_session() as session:
            await session.execute(text("CREATE TABLE numbers (n INTEGER)"))
            await session.execute(
                text("INSERT INTO numbers VALUES (:n)"), [{"n": n} for n in range(5)]
            )
            await session.commit()
        async with database.read_session() as session:
            total = await session.scalar(text("SELECT sum(n) FROM numbers"))
    finally:
        await database.dispose()

    assert total == 10
