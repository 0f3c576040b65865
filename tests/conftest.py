"""Shared fixtures: a real Redis, a SQLite file and a PostgreSQL database per test session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.servers import RedisServer, configured_database_url, configured_redis_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: the one named by TASKGATE_TEST_REDIS_URL or a private one."""
    url = configured_redis_url()
    if url:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The test Redis, flushed before the test so runs never see each other's keys."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix unique to one test."""
    return f"tgtest{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a fresh SQLite database file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'taskgate.db'}"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = configured_database_url()
    if not url:
        pytest.skip("TASKGATE_TEST_DATABASE_URL is not set; PostgreSQL tests need it")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped after the test."""
    import asyncpg  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    base = make_url(postgres_server_url)
    name = f"taskgate_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
