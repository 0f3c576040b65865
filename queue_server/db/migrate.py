"""Creating and upgrading the schema with Alembic.

`taskgate db upgrade` and the service's start-up both call `upgrade_database`. On
PostgreSQL the upgrade holds an advisory lock, so replicas that start together run it
one at a time and the later ones find the schema current.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

logger = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# An arbitrary constant that names taskgate's migration lock among advisory locks.
MIGRATION_LOCK_ID = 0x7A5C6A7E


def alembic_config() -> Config:
    """Return the Alembic configuration shipped inside the package."""
    return Config(str(ALEMBIC_INI))


def head_revision() -> str | None:
    """Return the newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Create the schema, or upgrade it, to `revision` (the newest by default)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade_on, revision)
            await connection.commit()
    finally:
        await engine.dispose()
    logger.info("database schema at revision %s", revision)


def upgrade_database_sync(url: str, revision: str = "head") -> None:
    """Run `upgrade_database` from synchronous code (the CLI)."""
    asyncio.run(upgrade_database(url, revision))


async def current_revision(url: str) -> str | None:
    """Return the revision the database is at, or None before the first upgrade."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
