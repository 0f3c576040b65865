"""Decisions: every orchestration result kept with its run, found again by transition id."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from queue_server.db.models import DecisionRow
from queue_server.protocol import OrchestrationResultView

DECISIONS = DecisionRow.__table__

# Statements of the hot path are built once, with bind parameters, so SQLAlchemy
# neither rebuilds them nor recomputes their compiled-cache key on each execution.
INSERT_DECISION = DECISIONS.insert()
FIND_ANSWER = select(DecisionRow.answer).where(
    DecisionRow.transition_id == bindparam("transition_id")
)
FIND_ANSWERS = select(DecisionRow.transition_id, DecisionRow.answer).where(
    DecisionRow.transition_id.in_(bindparam("transition_ids", expanding=True))
)


async def find_decision(session: AsyncSession, transition_id: UUID) -> DecisionRow | None:
    """Return the stored decision of a transition id, or None if it was never decided."""
    return await session.scalar(
        select(DecisionRow).where(DecisionRow.transition_id == transition_id)
    )


async def find_answer(session: AsyncSession, transition_id: UUID) -> dict[str, Any] | None:
    """Return the reply stored for a transition id, or None if it was never decided.

    It reads the one column a resend needs, which costs less than loading a `DecisionRow`.
    """
    return await session.scalar(FIND_ANSWER, {"transition_id": transition_id})


def decision_values(
    *,
    view: OrchestrationResultView,
    answer: dict[str, Any],
    transition_id: UUID | None,
    actor: str,
    proposed_type: str | None,
    proposed_name: str | None,
    now: datetime,
    run_kind: str = "task_run",
) -> dict[str, Any]:
    """Return the bound values of one decision row; `answer` is the reply sent for it."""
    return {
        "run_id": view.run_id,
        "run_kind": run_kind,
        "transition_id": transition_id,
        "actor": actor,
        "proposed_type": proposed_type,
        "proposed_name": proposed_name,
        "status": view.status,
        "rule": view.rule,
        "reason": view.reason,
        "state_id": view.state.id if view.state is not None else None,
        "delay_seconds": view.delay_seconds,
        "answer": answer,
        "created": now,
    }


async def insert_decision(session: AsyncSession, values: dict[str, Any]) -> None:
    """Store one decision built by `decision_values`, with a Core statement at once."""
    await session.execute(INSERT_DECISION, values)


async def find_answers(
    session: AsyncSession, transition_ids: list[UUID]
) -> dict[UUID, dict[str, Any]]:
    """Return the stored reply of each of `transition_ids` that was decided, in one query."""
    if not transition_ids:
        return {}
    rows = await session.execute(FIND_ANSWERS, {"transition_ids": transition_ids})
    return {transition_id: answer for transition_id, answer in rows}


async def first_decision(session: AsyncSession, run_id: UUID) -> DecisionRow | None:
    """Return the oldest decision kept for a run: for a created run, its first state."""
    return await session.scalar(
        select(DecisionRow).where(DecisionRow.run_id == run_id).order_by(DecisionRow.id).limit(1)
    )


async def read_decisions(
    session: AsyncSession, run_id: UUID, limit: int | None = None
) -> list[DecisionRow]:
    """Return the run's decisions (only the newest `limit` when given), oldest first."""
    statement = (
        select(DecisionRow).where(DecisionRow.run_id == run_id).order_by(DecisionRow.id.desc())
    )
    if limit is not None:
        statement = statement.limit(limit)
    rows = await session.scalars(statement)
    return list(reversed(rows.all()))


async def prune_decisions(session: AsyncSession, *, keep: int, forget_before: datetime) -> int:
    """Delete decisions older than `forget_before` that are not among their run's last `keep`.

    A decision newer than `forget_before` stays even past `keep`, because its transition
    id must still be found when its sender resends. Returns the number deleted.
    """
    position = (
        func.row_number()
        .over(partition_by=DecisionRow.run_id, order_by=DecisionRow.id.desc())
        .label("position")
    )
    ranked = select(DecisionRow.id, DecisionRow.created, position).subquery()
    expired = (
        select(ranked.c.id)
        .where(ranked.c.position > keep)
        .where(ranked.c.created < forget_before)
    )
    result = await session.execute(delete(DecisionRow).where(DecisionRow.id.in_(expired)))
    return result.rowcount or 0
