"""Task run rows: locking, creation, queue counts, filters and views."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.states import State, StateType
from queue_server.db.convert import state_from_row
from queue_server.db.models import ResultRow, TaskRunRow, TaskRunStateRow
from queue_server.db.states import read_task_run_state
from queue_server.db.upsert import insert_if_absent
from queue_server.protocol import TaskRunView


async def lock_task_run(session: AsyncSession, run_id: UUID) -> TaskRunRow | None:
    """Load a task run for a transition, locked until the batch commits.

    PostgreSQL takes the row lock (`FOR UPDATE`) and returns the latest committed row;
    on SQLite the batch already holds the database write lock.
    """
    return await session.scalar(LOCK_TASK_RUN, {"run_id": run_id})


# Statements of the hot path are built once, with bind parameters, so SQLAlchemy
# neither rebuilds them nor recomputes their compiled-cache key on each execution.
LOCK_TASK_RUN = (
    select(TaskRunRow)
    .where(TaskRunRow.id == bindparam("run_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


LOCK_TASK_RUN_WITH_STATE = (
    select(TaskRunRow, TaskRunStateRow, ResultRow)
    .outerjoin(TaskRunStateRow, TaskRunStateRow.id == TaskRunRow.state_id)
    .outerjoin(ResultRow, ResultRow.id == TaskRunStateRow.result_id)
    .where(TaskRunRow.id == bindparam("run_id"))
    .with_for_update(of=TaskRunRow)
    .execution_options(populate_existing=True)
)


async def lock_task_run_with_state(
    session: AsyncSession, run_id: UUID
) -> tuple[TaskRunRow | None, State | None]:
    """Load a task run locked as `lock_task_run` does, with its current state, in one query.

    On PostgreSQL, a run that another transaction changed while this one waited for the
    lock comes back as its newest version, but the joined state is read from the
    statement's older snapshot and may be missing. The state is then read again, and an
    empty result falls back to `lock_task_run`, so the row and state returned are always
    the latest.
    """
    found = (await session.execute(LOCK_TASK_RUN_WITH_STATE, {"run_id": run_id})).first()
    if found is None:
        row = await lock_task_run(session, run_id)
        return row, await read_task_run_state(session, row.state_id) if row else None
    row, state_row, result_row = found
    if row.state_id is None:
        return row, None
    if state_row is None or state_row.id != row.state_id:
        return row, await read_task_run_state(session, row.state_id)
    return row, state_from_row(state_row, result_row)


async def insert_task_run(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a new task run; return False when a run with that id already exists."""
    return await insert_if_absent(session, TaskRunRow, values)


async def count_queued(session: AsyncSession, task_key: str) -> int:
    """Count the Scheduled background runs of one task key."""
    return await session.scalar(COUNT_QUEUED, {"task_key": task_key}) or 0


COUNT_QUEUED = (
    select(func.count())
    .select_from(TaskRunRow)
    .where(TaskRunRow.task_key == bindparam("task_key"))
    .where(TaskRunRow.is_background.is_(True))
    .where(TaskRunRow.state_type == StateType.SCHEDULED.value)
)


async def queue_counts(session: AsyncSession) -> dict[str, int]:
    """Count the Scheduled background runs of every task key that has some."""
    rows = await session.execute(
        select(TaskRunRow.task_key, func.count())
        .where(TaskRunRow.is_background.is_(True))
        .where(TaskRunRow.state_type == StateType.SCHEDULED.value)
        .group_by(TaskRunRow.task_key)
    )
    return {task_key: count for task_key, count in rows}


async def scheduled_background_runs(
    session: AsyncSession, *, after: UUID | None = None, limit: int | None = None
) -> list[TaskRunRow]:
    """Return Scheduled background runs, the ones whose queue entry must exist, by run id.

    `after` and `limit` read one page: at most `limit` runs whose id follows `after`.
    """
    statement = (
        select(TaskRunRow)
        .where(TaskRunRow.is_background.is_(True))
        .where(TaskRunRow.state_type == StateType.SCHEDULED.value)
        .where(TaskRunRow.state_id.is_not(None))
        .order_by(TaskRunRow.id)
    )
    if after is not None:
        statement = statement.where(TaskRunRow.id > after)
    if limit is not None:
        statement = statement.limit(limit)
    return list(await session.scalars(statement))


async def runs_by_worker(session: AsyncSession) -> dict[str, list[UUID]]:
    """Return the runs each worker holds in Pending, Running or Cancelling."""
    rows = await session.execute(
        select(TaskRunRow.worker_id, TaskRunRow.id)
        .where(TaskRunRow.worker_id.is_not(None))
        .where(TaskRunRow.state_type.in_(HELD_STATE_TYPES))
        .order_by(TaskRunRow.worker_id, TaskRunRow.id)
    )
    held: dict[str, list[UUID]] = defaultdict(list)
    for worker_id, run_id in rows:
        held[worker_id].append(run_id)
    return dict(held)


async def run_ids_of_worker(
    session: AsyncSession, worker_id: str, run_ids: list[UUID] | None
) -> list[UUID]:
    """Return, in id order, the runs the worker holds (only those in `run_ids` when given)."""
    statement = (
        select(TaskRunRow.id)
        .where(TaskRunRow.worker_id == worker_id)
        .where(TaskRunRow.state_type.in_(HELD_STATE_TYPES))
    )
    if run_ids is not None:
        statement = statement.where(TaskRunRow.id.in_(run_ids))
    return sorted(await session.scalars(statement))


HELD_STATE_TYPES = (
    StateType.PENDING.value,
    StateType.RUNNING.value,
    StateType.CANCELLING.value,
)


async def filter_task_runs(
    session: AsyncSession,
    *,
    state_type: StateType | None = None,
    state_name: str | None = None,
    task_key: str | None = None,
    tag: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[TaskRunRow]:
    """Return task runs matching every given filter, newest first."""
    statement = select(TaskRunRow)
    if state_type is not None:
        statement = statement.where(TaskRunRow.state_type == StateType(state_type).value)
    if state_name is not None:
        statement = statement.where(TaskRunRow.state_name == state_name)
    if task_key is not None:
        statement = statement.where(TaskRunRow.task_key == task_key)
    statement = statement.order_by(TaskRunRow.created.desc(), TaskRunRow.id)
    if tag is None:
        rows = await session.scalars(statement.limit(limit).offset(offset))
        return list(rows)
    # NOTE: tags are a JSON list, so the tag filter runs in Python over the rows the
    # other filters match. A large table filtered by tag alone is read in full.
    matching = [row for row in await session.scalars(statement) if tag in (row.tags or [])]
    return matching[offset : offset + limit]


def task_run_view(row: TaskRunRow, state: State | None) -> TaskRunView:
    """Build the reader's view of a task run; the state's data is kept only when final."""
    if state is not None and not state.is_final():
        state = state.model_copy(update={"data": None})
    return TaskRunView(
        id=row.id,
        name=row.name,
        task_key=row.task_key,
        tags=list(row.tags or []),
        is_background=row.is_background,
        empirical_policy=row.empirical_policy or {},
        run_count=row.run_count,
        state=state,
        start_time=row.start_time,
        end_time=row.end_time,
        total_run_time=row.total_run_time,
        expected_start_time=row.expected_start_time,
        worker_id=row.worker_id,
        persist_result=row.persist_result,
        timeout_seconds=row.timeout_seconds,
        created=row.created,
    )
