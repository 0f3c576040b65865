"""Fixtures of the transition service tests: a migrated database and a service on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database
from queue_server.service import TransitionService
from queue_server.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url=None, redis_url=None)


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """The test database with taskgate's schema."""
    await upgrade_database(database_url)
    return database_url


@pytest.fixture
async def database(migrated_url: str) -> AsyncIterator[Database]:
    handle = Database(migrated_url)
    try:
        yield handle
    finally:
        await handle.dispose()


@pytest.fixture
async def service(database: Database, settings: Settings) -> TransitionService:
    return TransitionService(database, settings, replica_id="test-replica")
