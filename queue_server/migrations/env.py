"""Alembic environment: runs migrations on a connection the caller hands over, or on
the database named by TASKGATE_DATABASE_URL when Alembic is run from the command line."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from queue_server.db.models import Base
from queue_server.settings import Settings

target_metadata = Base.metadata


def run_on_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    url = Settings().resolved_database_url()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on_connection)
            await connection.commit()
    finally:
        await engine.dispose()


given = context.config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("taskgate migrations run online only; set TASKGATE_DATABASE_URL")
if given is not None:
    run_on_connection(given)
else:
    asyncio.run(run_from_settings())
