"""SQLAlchemy models of every table the transition service writes.

SQL is the system of record: runs with their parameters, every state, every decision,
results, the task run state cache, tag concurrency limits and their holders, flow runs
and deployments. Redis only keeps what can be rebuilt from these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from queue_server.db.types import JSONDocument, UTCDateTime

# Explicit constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[str]: JSONDocument,
        Any: JSONDocument,
        UUID: Uuid(),
        str: String(500),
    }


class RunSnapshotColumns:
    """Columns that task runs and flow runs share: the current state and the run clock."""

    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(default="")
    tags: Mapped[list[str]] = mapped_column(default=list)
    state_id: Mapped[UUID | None]
    state_type: Mapped[str | None] = mapped_column(String(20))
    state_name: Mapped[str | None] = mapped_column(String(200))
    state_timestamp: Mapped[datetime | None]
    run_count: Mapped[int] = mapped_column(default=0)
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    total_run_time: Mapped[float] = mapped_column(Float, default=0.0)
    expected_start_time: Mapped[datetime | None]
    next_scheduled_start_time: Mapped[datetime | None]
    created: Mapped[datetime]
    updated: Mapped[datetime]


class TaskRunRow(RunSnapshotColumns, Base):
    """One task run: the snapshot the policy reads, plus what a worker needs to execute it."""

    __tablename__ = "task_runs"

    task_key: Mapped[str]
    dynamic_key: Mapped[str] = mapped_column(default="")
    flow_run_id: Mapped[UUID | None] = mapped_column(index=True)
    is_background: Mapped[bool] = mapped_column(Boolean, default=False)
    empirical_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow_run_run_count: Mapped[int] = mapped_column(default=0)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)  # an envelope
    # The claim token of the accepted claim; every later worker proposal must carry it.
    claim_token: Mapped[UUID | None]
    worker_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # The cache key of the current Running state, which cache isolation looks up to
    # find another run Running with the same key. It is cleared when the run leaves Running.
    cache_key: Mapped[str | None] = mapped_column(Text)
    # The task's cache options sent at creation; they travel in every job of the run.
    submitted_cache_key: Mapped[str | None] = mapped_column(Text)
    submitted_cache_expiration: Mapped[datetime | None]
    refresh_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    persist_result: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    # SHA-256 of the create request, so a resend with other contents is a conflict.
    create_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_task_runs_queue", "task_key", "is_background", "state_type"),
        Index("ix_task_runs_state", "state_type", "state_name"),
        Index("ix_task_runs_cache_key", "cache_key", postgresql_using="hash"),
    )


class TaskRunStateRow(Base):
    """One state of a task run; `seq` orders a run's states without relying on timestamps."""

    __tablename__ = "task_run_states"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    task_run_id: Mapped[UUID] = mapped_column(ForeignKey("task_runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any | None]
    state_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result_id: Mapped[UUID | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"))

    __table_args__ = (UniqueConstraint("task_run_id", "seq"),)


class ResultRow(Base):
    """A persisted result value of a Completed state, kept apart from the state row."""

    __tablename__ = "results"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    task_run_id: Mapped[UUID | None] = mapped_column(index=True)
    flow_run_id: Mapped[UUID | None] = mapped_column(index=True)
    state_id: Mapped[UUID] = mapped_column(index=True)
    data: Mapped[Any]  # {"type": "result", "serializer": ..., "value": ...}
    created: Mapped[datetime]


class DecisionRow(Base):
    """One orchestration result of one run, including WAIT, REJECT and ABORT."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[UUID]
    run_kind: Mapped[str] = mapped_column(String(20), default="task_run")
    transition_id: Mapped[UUID | None] = mapped_column(unique=True)
    actor: Mapped[str] = mapped_column(String(20))
    proposed_type: Mapped[str | None] = mapped_column(String(20))
    proposed_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    rule: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    state_id: Mapped[UUID | None]
    delay_seconds: Mapped[float | None] = mapped_column(Float)
    # The reply sent for this decision, so a resent transition id gets the same reply.
    answer: Mapped[dict[str, Any]]
    created: Mapped[datetime]

    __table_args__ = (
        Index("ix_decisions_run", "run_id", "id"),
        Index("ix_decisions_created", "created"),
    )


class CacheEntryRow(Base):
    """The task run state cache: a Completed state found by its cache key."""

    __tablename__ = "task_run_state_cache"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    cache_key: Mapped[str] = mapped_column(Text)
    cache_expiration: Mapped[datetime | None]
    task_run_state_id: Mapped[UUID]
    created: Mapped[datetime]

    __table_args__ = (Index("ix_task_run_state_cache_key", "cache_key", "created"),)


class ConcurrencyLimitRow(Base):
    """A tag concurrency limit."""

    __tablename__ = "concurrency_limits"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    tag: Mapped[str] = mapped_column(unique=True)
    limit: Mapped[int]
    created: Mapped[datetime]
    updated: Mapped[datetime]


class SlotHolderRow(Base):
    """One slot of a tag limit held by one task run."""

    __tablename__ = "concurrency_slot_holders"

    tag: Mapped[str] = mapped_column(primary_key=True)
    task_run_id: Mapped[UUID] = mapped_column(primary_key=True, index=True)
    created: Mapped[datetime]


class FlowRunRow(RunSnapshotColumns, Base):
    """One flow run."""

    __tablename__ = "flow_runs"

    flow_name: Mapped[str]
    deployment_id: Mapped[UUID | None]
    parent_task_run_id: Mapped[UUID | None]
    infrastructure_pid: Mapped[str | None]
    empirical_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    create_digest: Mapped[str | None] = mapped_column(String(64))


class FlowRunStateRow(Base):
    """One state of a flow run."""

    __tablename__ = "flow_run_states"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    flow_run_id: Mapped[UUID] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any | None]
    state_details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (UniqueConstraint("flow_run_id", "seq"),)


class DeploymentRow(Base):
    """A deployment: a named way to start runs of one flow."""

    __tablename__ = "deployments"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str]
    flow_name: Mapped[str]
    created: Mapped[datetime]

    __table_args__ = (UniqueConstraint("flow_name", "name"),)
