"""Throwaway databases for one benchmark run: a SQLite file or a PostgreSQL database.

Each run gets a fresh, empty database that is removed afterwards. The PostgreSQL
database is created on the loopback server named by the admin URL and dropped
when the run ends, even when it fails.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg


@dataclass
class SqliteDatabase:
    """A SQLite file in a private temporary folder."""

    label: str = "SQLite"
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="taskgate-bench-db-"))
    )

    @property
    def path(self) -> Path:
        return self.folder / "taskgate.db"

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.path}"

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def size_bytes(self) -> int:
        """Fold the write-ahead log into the file, then return the bytes of both."""
        if self.path.exists():
            connection = sqlite3.connect(self.path, isolation_level=None)
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()
        return sum(
            path.stat().st_size
            for path in (self.path, self.path.with_name(self.path.name + "-wal"))
            if path.exists()
        )

    def version(self) -> str:
        return sqlite3.sqlite_version

    def drop(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class PostgresDatabase:
    """A database named ``taskgate_bench_<hex>`` on a loopback PostgreSQL server."""

    admin_url: str  # libpq URL of a database the user may connect to, such as postgres
    label: str = "PostgreSQL"
    name: str = field(default_factory=lambda: f"taskgate_bench_{uuid.uuid4().hex[:12]}")

    def __post_init__(self) -> None:
        host = urlsplit(self.admin_url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(
                f"PostgreSQL host {host!r} is not a loopback address; "
                "the benchmarks only run against a server on this machine"
            )

    def _url_for(self, database: str, scheme: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))

    @property
    def url(self) -> str:
        return self._url_for(self.name, "postgresql+asyncpg")

    async def _admin(self, statement: str) -> str | None:
        admin_database = urlsplit(self.admin_url).path.lstrip("/") or "postgres"
        connection = await asyncpg.connect(self._url_for(admin_database, "postgresql"))
        try:
            return await connection.fetchval(statement)
        finally:
            await connection.close()

    def create(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))

    def size_bytes(self) -> int:
        return int(asyncio.run(self._admin(f"SELECT pg_database_size('{self.name}')")))

    def version(self) -> str:
        return str(asyncio.run(self._admin("SHOW server_version")))

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


BenchDatabase = SqliteDatabase | PostgresDatabase
