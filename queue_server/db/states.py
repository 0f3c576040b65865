"""State history of task runs and flow runs, with results kept in their own table."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.states import State
from queue_server.db.convert import details_document, is_persisted_result, state_from_row
from queue_server.db.models import FlowRunStateRow, ResultRow, TaskRunStateRow

RESULTS = ResultRow.__table__
TASK_RUN_STATES = TaskRunStateRow.__table__

INSERT_RESULT = RESULTS.insert()

# One statement that numbers the new state after the run's last one, so appending a
# state needs no separate MAX() query.
INSERT_TASK_RUN_STATE = TASK_RUN_STATES.insert().values(
    seq=select(func.coalesce(func.max(TASK_RUN_STATES.c.seq), 0) + 1)
    .where(TASK_RUN_STATES.c.task_run_id == bindparam("seq_of_run_id"))
    .scalar_subquery()
)


def task_run_state_values(
    run_id: UUID, state: State, now: datetime
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Return the bound values of a new state's `results` row (or None) and its state row.

    A persisted result goes to the results table and the state row points at it. The
    state row's values suit `INSERT_TASK_RUN_STATE`, which numbers the state itself.
    """
    data = state.data
    result_values = None
    result_id = None
    if is_persisted_result(data):
        result_id = uuid4()
        result_values = {
            "id": result_id,
            "task_run_id": run_id,
            "state_id": state.id,
            "data": data,
            "created": now,
        }
        data = None
    state_values = {
        "id": state.id,
        "task_run_id": run_id,
        "seq_of_run_id": run_id,
        "type": state.type.value,
        "name": state.name,
        "timestamp": state.timestamp,
        "message": state.message,
        "data": data,
        "state_details": details_document(state),
        "result_id": result_id,
    }
    return result_values, state_values


async def insert_task_run_state(
    session: AsyncSession, run_id: UUID, state: State, now: datetime
) -> None:
    """Append `state` to the run's history with the next sequence number.

    The caller holds the run's lock, so the next `seq`, which the insert itself computes,
    cannot be taken twice. Both rows are inserted with Core statements, which cost less
    than ORM objects and a flush.
    """
    result_values, state_values = task_run_state_values(run_id, state, now)
    if result_values is not None:
        await session.execute(INSERT_RESULT, result_values)
    await session.execute(INSERT_TASK_RUN_STATE, state_values)


async def insert_flow_run_state(
    session: AsyncSession, run_id: UUID, state: State
) -> FlowRunStateRow:
    """Append `state` to the flow run's history with the next sequence number."""
    seq = await _next_seq(session, FlowRunStateRow, FlowRunStateRow.flow_run_id, run_id)
    row = FlowRunStateRow(
        id=state.id,
        flow_run_id=run_id,
        seq=seq,
        type=state.type.value,
        name=state.name,
        timestamp=state.timestamp,
        message=state.message,
        data=state.data,
        state_details=details_document(state),
    )
    session.add(row)
    await session.flush()
    return row


async def _next_seq(session: AsyncSession, model: type, column: object, run_id: UUID) -> int:
    highest = await session.scalar(select(func.max(model.seq)).where(column == run_id))
    return (highest or 0) + 1


async def read_task_run_state(session: AsyncSession, state_id: UUID | None) -> State | None:
    """Load one task run state with its result, or None."""
    if state_id is None:
        return None
    found = (
        await session.execute(
            select(TaskRunStateRow, ResultRow)
            .outerjoin(ResultRow, ResultRow.id == TaskRunStateRow.result_id)
            .where(TaskRunStateRow.id == state_id)
        )
    ).first()
    if found is None:
        return None
    return state_from_row(found[0], found[1])


async def read_flow_run_state(session: AsyncSession, state_id: UUID | None) -> State | None:
    """Load one flow run state, or None."""
    if state_id is None:
        return None
    row = await session.get(FlowRunStateRow, state_id)
    return state_from_row(row, None) if row is not None else None


async def task_run_history(session: AsyncSession, run_id: UUID) -> list[State]:
    """Return every state of a task run, oldest first."""
    rows = await session.execute(
        select(TaskRunStateRow, ResultRow)
        .outerjoin(ResultRow, ResultRow.id == TaskRunStateRow.result_id)
        .where(TaskRunStateRow.task_run_id == run_id)
        .order_by(TaskRunStateRow.seq)
    )
    return [state_from_row(state_row, result) for state_row, result in rows]


async def flow_run_history(session: AsyncSession, run_id: UUID) -> list[State]:
    """Return every state of a flow run, oldest first."""
    rows = await session.scalars(
        select(FlowRunStateRow)
        .where(FlowRunStateRow.flow_run_id == run_id)
        .order_by(FlowRunStateRow.seq)
    )
    return [state_from_row(row, None) for row in rows]
