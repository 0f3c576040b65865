"""Operator actions on tag concurrency limits: create, read, list, delete, reset."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.protocols import ConcurrencyLimit
from queue_server.db.models import ConcurrencyLimitRow, SlotHolderRow


async def upsert_limit(session: AsyncSession, tag: str, limit: int, now: datetime) -> None:
    """Create the tag's limit, or change it when it exists; holders are kept."""
    row = await session.scalar(
        select(ConcurrencyLimitRow).where(ConcurrencyLimitRow.tag == tag).with_for_update()
    )
    if row is None:
        session.add(
            ConcurrencyLimitRow(id=uuid4(), tag=tag, limit=limit, created=now, updated=now)
        )
    else:
        row.limit = limit
        row.updated = now
    await session.flush()


async def read_limit(session: AsyncSession, tag: str) -> ConcurrencyLimit | None:
    """Return the tag's limit with the runs holding its slots, or None."""
    row = await session.scalar(select(ConcurrencyLimitRow).where(ConcurrencyLimitRow.tag == tag))
    if row is None:
        return None
    holders = await session.scalars(
        select(SlotHolderRow.task_run_id).where(SlotHolderRow.tag == tag)
    )
    return ConcurrencyLimit(tag=row.tag, limit=row.limit, holders=set(holders))


async def list_limits(session: AsyncSession) -> list[ConcurrencyLimit]:
    """Return every limit with its holders, in tag order."""
    rows = (
        await session.scalars(select(ConcurrencyLimitRow).order_by(ConcurrencyLimitRow.tag))
    ).all()
    holders: dict[str, set] = {row.tag: set() for row in rows}
    for tag, run_id in await session.execute(select(SlotHolderRow.tag, SlotHolderRow.task_run_id)):
        if tag in holders:
            holders[tag].add(run_id)
    return [
        ConcurrencyLimit(tag=row.tag, limit=row.limit, holders=holders[row.tag]) for row in rows
    ]


async def delete_limit(session: AsyncSession, tag: str) -> bool:
    """Delete the tag's limit and release its slots; return whether it existed."""
    await session.execute(delete(SlotHolderRow).where(SlotHolderRow.tag == tag))
    result = await session.execute(
        delete(ConcurrencyLimitRow).where(ConcurrencyLimitRow.tag == tag)
    )
    return bool(result.rowcount)


async def reset_limit(session: AsyncSession, tag: str) -> bool:
    """Release every slot of the tag's limit; return whether the limit exists."""
    exists = await session.scalar(
        select(ConcurrencyLimitRow.id).where(ConcurrencyLimitRow.tag == tag).with_for_update()
    )
    if exists is None:
        return False
    await session.execute(delete(SlotHolderRow).where(SlotHolderRow.tag == tag))
    return True
