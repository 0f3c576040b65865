"""What the rules need from storage, as small protocols on the orchestration context.

The policy never imports Redis or SQL. The service implements these protocols on its
database session; `policy.memory` implements them in memory for tests and for the
in-process test mode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel, Field

from policy.runs import FlowRun, TaskRun
from policy.states import State


class Clock(Protocol):
    """The one clock every due time and expiry is judged by."""

    def now(self) -> datetime: ...


class CacheStore(Protocol):
    """The task run state cache: completed states looked up by cache key."""

    async def lookup(self, cache_key: str, now: datetime) -> State | None:
        """Return the newest cached state for the key that has not expired at `now`."""

    async def insert(self, cache_key: str, expiration: datetime | None, state: State) -> None: ...

    async def is_held_running(self, cache_key: str, other_than: UUID) -> bool:
        """Tell whether a run other than `other_than` is Running with this cache key."""


class ConcurrencyLimit(BaseModel):
    """A tag concurrency limit and the task runs that hold its slots."""

    tag: str
    limit: int
    holders: set[UUID] = Field(default_factory=set)


class ConcurrencySlots(Protocol):
    """Tag concurrency limits, one slot per run and tag."""

    async def read_limits(self, tags: list[str]) -> list[ConcurrencyLimit]:
        """Return the limits configured for these tags, in tag order."""

    async def take_slot(self, tag: str, run_id: UUID) -> None: ...

    async def release_slots(self, run_id: UUID, tags: list[str] | None = None) -> None:
        """Release the slots the run holds on these tags (all of its slots when None)."""


class FlowRunReader(Protocol):
    """Reads the parent flow run of a task run."""

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun | None: ...


class StateRecorder(Protocol):
    """Writes a validated state as the run's new current state."""

    async def record(self, run: TaskRun | FlowRun, state: State) -> None: ...


class EventSink(Protocol):
    """Collects state-change events; the service publishes them after the commit."""

    def publish(self, event: dict[str, Any]) -> None: ...


class SubflowParentUpdater(Protocol):
    """Mirrors a subflow's validated state onto its parent's tracking task run (forced)."""

    async def set_parent_task_state(self, task_run_id: UUID, state: State) -> None: ...


class EnqueueIntent(BaseModel):
    """A request to put a background run on its task key's queue once the state is committed."""

    run_id: UUID
    task_key: str
    state_id: UUID
    state_name: str
    scheduled_time: datetime
