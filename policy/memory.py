"""In-memory implementations of the storage protocols, for tests and the test mode.

They keep everything in plain dicts and lists and judge time by a `MemoryClock`, so a
test can move time forward instead of sleeping.

NOTE: these stores have no transactions. When an after-hook raises, the state it
followed stays recorded here, where the service would roll back its savepoint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from policy.protocols import ConcurrencyLimit
from policy.runs import FlowRun, TaskRun
from policy.states import State, StateType, utc_now


class MemoryClock:
    """A clock that moves only when a test advances or sets it."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or utc_now()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` and return the new time."""
        self._now = self._now + timedelta(seconds=seconds)
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now


@dataclass
class _CacheEntry:
    cache_key: str
    expiration: datetime | None
    state: State


class MemoryCache:
    """The task run state cache, plus the cache keys of runs currently Running."""

    def __init__(self) -> None:
        self.entries: list[_CacheEntry] = []
        self.running_keys: dict[UUID, str] = {}

    async def lookup(self, cache_key: str, now: datetime) -> State | None:
        for entry in reversed(self.entries):
            if entry.cache_key != cache_key:
                continue
            if entry.expiration is None or entry.expiration > now:
                return entry.state
        return None

    async def insert(self, cache_key: str, expiration: datetime | None, state: State) -> None:
        self.entries.append(_CacheEntry(cache_key, expiration, state.model_copy(deep=True)))

    async def is_held_running(self, cache_key: str, other_than: UUID) -> bool:
        return any(
            key == cache_key and run_id != other_than for run_id, key in self.running_keys.items()
        )

    def track(self, run_id: UUID, state: State) -> None:
        """Note the run's new current state, keeping `running_keys` up to date."""
        if state.type is StateType.RUNNING and state.state_details.cache_key:
            self.running_keys[run_id] = state.state_details.cache_key
        else:
            self.running_keys.pop(run_id, None)


class MemorySlots:
    """Tag concurrency limits and their holders."""

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self.limits: dict[str, ConcurrencyLimit] = {}
        for tag, limit in (limits or {}).items():
            self.set_limit(tag, limit)

    def set_limit(self, tag: str, limit: int) -> None:
        holders = self.limits[tag].holders if tag in self.limits else set()
        self.limits[tag] = ConcurrencyLimit(tag=tag, limit=limit, holders=holders)

    def holders(self, tag: str) -> set[UUID]:
        return set(self.limits[tag].holders) if tag in self.limits else set()

    async def read_limits(self, tags: list[str]) -> list[ConcurrencyLimit]:
        return [self.limits[tag].model_copy(deep=True) for tag in tags if tag in self.limits]

    async def take_slot(self, tag: str, run_id: UUID) -> None:
        self.limits[tag].holders.add(run_id)

    async def release_slots(self, run_id: UUID, tags: list[str] | None = None) -> None:
        for tag, limit in self.limits.items():
            if tags is None or tag in tags:
                limit.holders.discard(run_id)


class MemoryFlowRuns:
    """Flow runs by id, for task runs that read their parent."""

    def __init__(self, *flow_runs: FlowRun) -> None:
        self.flow_runs: dict[UUID, FlowRun] = {run.id: run for run in flow_runs}

    def add(self, flow_run: FlowRun) -> None:
        self.flow_runs[flow_run.id] = flow_run

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun | None:
        return self.flow_runs.get(flow_run_id)


class MemoryRecorder:
    """The state history of every run, in the order the states were written."""

    def __init__(self, cache: MemoryCache | None = None) -> None:
        self.history: dict[UUID, list[State]] = defaultdict(list)
        self.cache = cache

    async def record(self, run: TaskRun | FlowRun, state: State) -> None:
        self.history[run.id].append(state)
        if self.cache is not None:
            self.cache.track(run.id, state)

    def states_of(self, run_id: UUID) -> list[State]:
        return list(self.history.get(run_id, []))


class MemoryEvents:
    """State-change events in the order they were published."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class MemorySubflowParents:
    """The states mirrored onto parent tracking task runs, by task run id."""

    def __init__(self) -> None:
        self.states: dict[UUID, list[State]] = defaultdict(list)

    async def set_parent_task_state(self, task_run_id: UUID, state: State) -> None:
        self.states[task_run_id].append(state)
