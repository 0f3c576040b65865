"""INSERT ... ON CONFLICT DO NOTHING on both dialects."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

# One INSERT ... ON CONFLICT DO NOTHING per (dialect name, model), built on first use.
_statements: dict[tuple[str, type], Insert] = {}


async def insert_if_absent(session: AsyncSession, model: type, values: dict[str, Any]) -> bool:
    """Insert one row unless its primary key exists; return whether this call inserted it.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction
    and then does nothing, so two replicas creating one run never both succeed.
    """
    dialect = session.bind.dialect.name
    statement = _statements.get((dialect, model))
    if statement is None:
        module = postgresql if dialect == "postgresql" else sqlite
        # The insert names the model's table rather than the model, so it runs as a
        # Core statement, without the ORM's bulk-insert handling. The column names are
        # the attribute names. The values are bound at execution, so one statement
        # serves every insert.
        statement = module.insert(model.__table__).on_conflict_do_nothing()
        _statements[(dialect, model)] = statement
    result = await session.execute(statement, values)
    return result.rowcount == 1
