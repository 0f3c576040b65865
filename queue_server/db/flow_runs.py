"""Flow run rows: locking and creation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from queue_server.db.models import FlowRunRow
from queue_server.db.upsert import insert_if_absent


async def lock_flow_run(session: AsyncSession, run_id: UUID) -> FlowRunRow | None:
    """Load a flow run for a transition, locked until the batch commits."""
    return await session.scalar(
        select(FlowRunRow)
        .where(FlowRunRow.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def insert_flow_run(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a new flow run; return False when a flow run with that id already exists."""
    return await insert_if_absent(session, FlowRunRow, values)
