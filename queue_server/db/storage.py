"""SQL implementations of the storage protocols the policy's rules use.

Each object works on the session of the batch being applied, so everything a rule
writes lands in the savepoint of its transition. A database fault inside any of them
is raised as `StorageFault`, which the rule engine lets through instead of turning it
into ABORT, so the service can roll back the whole batch.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from uuid import UUID, uuid4

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from policy.protocols import Clock, ConcurrencyLimit
from policy.runs import FlowRun, TaskRun
from policy.states import State, StateType
from queue_server.db.convert import flow_run_from_row
from queue_server.db.faults import storage_fault_from
from queue_server.db.models import (
    CacheEntryRow,
    ConcurrencyLimitRow,
    FlowRunRow,
    SlotHolderRow,
    TaskRunRow,
)
from queue_server.db.states import (
    insert_flow_run_state,
    insert_task_run_state,
    read_flow_run_state,
    read_task_run_state,
)

P = ParamSpec("P")
T = TypeVar("T")


def raises_storage_fault(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Re-raise a database fault inside `method` as `StorageFault`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (SQLAlchemyError, OSError) as error:
            raise storage_fault_from(error) from error

    return wrapper


class SqlCacheStore:
    """The task run state cache in `task_run_state_cache`."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    @raises_storage_fault
    async def lookup(self, cache_key: str, now: datetime) -> State | None:
        state_id = await self.session.scalar(
            select(CacheEntryRow.task_run_state_id)
            .where(CacheEntryRow.cache_key == cache_key)
            .where(
                or_(CacheEntryRow.cache_expiration.is_(None), CacheEntryRow.cache_expiration > now)
            )
            .order_by(CacheEntryRow.created.desc())
            .limit(1)
        )
        return await read_task_run_state(self.session, state_id)

    @raises_storage_fault
    async def insert(self, cache_key: str, expiration: datetime | None, state: State) -> None:
        self.session.add(
            CacheEntryRow(
                id=uuid4(),
                cache_key=cache_key,
                cache_expiration=expiration,
                task_run_state_id=state.id,
                created=self.clock.now(),
            )
        )
        await self.session.flush()

    @raises_storage_fault
    async def is_held_running(self, cache_key: str, other_than: UUID) -> bool:
        return bool(
            await self.session.scalar(
                select(
                    exists()
                    .where(TaskRunRow.cache_key == cache_key)
                    .where(TaskRunRow.state_type == StateType.RUNNING.value)
                    .where(TaskRunRow.id != other_than)
                )
            )
        )


class SqlConcurrencySlots:
    """Tag concurrency limits in `concurrency_limits`, one holder row per run and tag.

    `read_limits` locks the limit rows (in tag order, on PostgreSQL) until the batch
    commits, so two replicas cannot both count a free slot and both take it.

    `untagged_run_ids` names runs stored without tags. A slot is taken only for one of
    the run's own tags, and a run's tags never change, so such a run never has a slot
    and releasing its slots needs no DELETE.
    """

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        untagged_run_ids: frozenset[UUID] = frozenset(),
    ) -> None:
        self.session = session
        self.clock = clock
        self.untagged_run_ids = untagged_run_ids

    @raises_storage_fault
    async def read_limits(self, tags: list[str]) -> list[ConcurrencyLimit]:
        if not tags:
            return []
        rows = (
            await self.session.scalars(
                select(ConcurrencyLimitRow)
                .where(ConcurrencyLimitRow.tag.in_(sorted(set(tags))))
                .order_by(ConcurrencyLimitRow.tag)
                .with_for_update()
            )
        ).all()
        holders: dict[str, set[UUID]] = {row.tag: set() for row in rows}
        if rows:
            found = await self.session.execute(
                select(SlotHolderRow.tag, SlotHolderRow.task_run_id).where(
                    SlotHolderRow.tag.in_(list(holders))
                )
            )
            for tag, run_id in found:
                holders[tag].add(run_id)
        return [
            ConcurrencyLimit(tag=row.tag, limit=row.limit, holders=holders[row.tag]) for row in rows
        ]

    @raises_storage_fault
    async def take_slot(self, tag: str, run_id: UUID) -> None:
        if await self.session.get(SlotHolderRow, (tag, run_id)) is not None:
            return
        self.session.add(SlotHolderRow(tag=tag, task_run_id=run_id, created=self.clock.now()))
        await self.session.flush()

    @raises_storage_fault
    async def release_slots(self, run_id: UUID, tags: list[str] | None = None) -> None:
        if run_id in self.untagged_run_ids:
            return
        statement = delete(SlotHolderRow).where(SlotHolderRow.task_run_id == run_id)
        if tags is not None:
            statement = statement.where(SlotHolderRow.tag.in_(tags))
        await self.session.execute(statement)


class SqlFlowRunReader:
    """Reads flow runs (the parent of a task run) from `flow_runs`."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @raises_storage_fault
    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun | None:
        row = await self.session.get(FlowRunRow, flow_run_id)
        if row is None:
            return None
        return flow_run_from_row(row, await read_flow_run_state(self.session, row.state_id))


class SqlStateRecorder:
    """Writes each validated state to the run's history and remembers what it wrote.

    The service reads `written` after a transition to publish one event per state.
    """

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.written: list[tuple[TaskRun | FlowRun, State]] = []

    @raises_storage_fault
    async def record(self, run: TaskRun | FlowRun, state: State) -> None:
        if isinstance(run, TaskRun):
            await insert_task_run_state(self.session, run.id, state, self.clock.now())
        else:
            await insert_flow_run_state(self.session, run.id, state)
        self.written.append((run, state))

    def written_state(self, run_id: UUID) -> State | None:
        """Return the last state written for `run_id`, or None when nothing was."""
        return last_written_state(self.written, run_id)


def last_written_state(
    written: list[tuple[TaskRun | FlowRun, State]], run_id: UUID
) -> State | None:
    """Return the last state in `written` that belongs to `run_id`, or None."""
    for run, state in reversed(written):
        if run.id == run_id:
            return state
    return None


class EventCollector:
    """Keeps the events rules publish; the service sends them after the commit."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)
