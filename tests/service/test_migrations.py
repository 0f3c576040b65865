"""Alembic creates and upgrades the schema on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from queue_server.db.migrate import current_revision, head_revision, upgrade_database
from queue_server.db.models import Base

EXPECTED_TABLES = {
    "task_runs",
    "task_run_states",
    "results",
    "decisions",
    "task_run_state_cache",
    "concurrency_limits",
    "concurrency_slot_holders",
    "flow_runs",
    "flow_run_states",
    "deployments",
}


async def test_upgrade_creates_every_table(database_url: str) -> None:
    assert await current_revision(database_url) is None

    await upgrade_database(database_url)

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert EXPECTED_TABLES <= tables
    assert differences == []
    assert await current_revision(database_url) == head_revision()


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    await upgrade_database(database_url)
    await upgrade_database(database_url)

    assert await current_revision(database_url) == head_revision()
