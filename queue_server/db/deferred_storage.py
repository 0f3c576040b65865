"""Storage for the rules of a plain transition, which writes nothing to SQL until the flush.

A plain transition is one of a task run with no tags, no cache key and no parent flow
run: the policy's rules then record states and nothing else. `DeferredStateRecorder`
keeps those states in the batch's `PendingWrites`. Any other storage call means the
transition is not plain after all, so it raises `NeedsDirectWrites`. The service
then applies the request again on the direct path, where each write goes to SQL at
once inside a savepoint.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from policy.errors import StorageFault
from policy.protocols import Clock, ConcurrencyLimit
from policy.runs import FlowRun, TaskRun
from policy.states import State
from queue_server.db.pending_writes import PendingWrites
from queue_server.db.states import task_run_state_values
from queue_server.db.storage import last_written_state


class NeedsDirectWrites(StorageFault):
    """A deferred transition needs storage that only the direct path offers.

    It subclasses `StorageFault` only so the rule engine lets it through instead of
    turning it into ABORT; the service catches it first and never treats it as a fault.
    """

    def __init__(self, need: str) -> None:
        super().__init__(f"{need} needs the direct write path")


class DeferredStateRecorder:
    """Keeps each validated task run state in `pending`; see the module docstring."""

    def __init__(self, pending: PendingWrites, clock: Clock) -> None:
        self.pending = pending
        self.clock = clock
        self.written: list[tuple[TaskRun | FlowRun, State]] = []

    async def record(self, run: TaskRun | FlowRun, state: State) -> None:
        if not isinstance(run, TaskRun):
            raise NeedsDirectWrites("a flow run state")
        self.pending.add_state(*task_run_state_values(run.id, state, self.clock.now()))
        self.written.append((run, state))

    def written_state(self, run_id: UUID) -> State | None:
        """Return the last state written for `run_id`, or None when nothing was."""
        return last_written_state(self.written, run_id)


class NoCacheStore:
    """The cache store of a plain transition: any use of it needs the direct path."""

    async def lookup(self, cache_key: str, now: datetime) -> State | None:
        raise NeedsDirectWrites("a cache lookup")

    async def insert(self, cache_key: str, expiration: datetime | None, state: State) -> None:
        raise NeedsDirectWrites("a cache insert")

    async def is_held_running(self, cache_key: str, other_than: UUID) -> bool:
        raise NeedsDirectWrites("a cache isolation check")


class NoSlots:
    """The concurrency slots of an untagged run, which never takes one."""

    async def read_limits(self, tags: list[str]) -> list[ConcurrencyLimit]:
        if tags:
            raise NeedsDirectWrites("a tag concurrency limit")
        return []

    async def take_slot(self, tag: str, run_id: UUID) -> None:
        raise NeedsDirectWrites("a concurrency slot")

    async def release_slots(self, run_id: UUID, tags: list[str] | None = None) -> None:
        return None


class NoFlowRuns:
    """The flow run reader of a run with no parent flow run."""

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun | None:
        raise NeedsDirectWrites("a parent flow run")
