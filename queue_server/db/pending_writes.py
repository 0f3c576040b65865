"""Rows a batch has decided to write but not yet sent, flushed with one statement per table.

A batch of plain background transitions writes the same few kinds of rows: new task
runs, states, persisted results, the runs' new snapshots and decisions. Sending each
row as it is decided costs a database round trip per row. Kept here, each kind is
sent as one executemany, so a batch costs one round trip per kind. `flush` sends them
in the order the foreign keys need: runs, results, states, snapshots, decisions.

Nothing here is visible to SQL until `flush`, so the code that reads rows back in the
same transaction (`Transitions` and the service) flushes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncSession

from queue_server.db.convert import SNAPSHOT_FIELDS
from queue_server.db.decisions import INSERT_DECISION
from queue_server.db.run_records import RUN_COLUMNS, TASK_RUNS, RunRecord
from queue_server.db.states import INSERT_RESULT, INSERT_TASK_RUN_STATE

INSERT_TASK_RUN = TASK_RUNS.insert()
UPDATE_TASK_RUN = TASK_RUNS.update().where(TASK_RUNS.c.id == bindparam("updated_run_id"))

# The columns a transition may change: the policy's snapshot fields and the columns
# the service sets beside them. A snapshot write sets all of them, so every row of
# one executemany binds the same parameters.
SNAPSHOT_COLUMNS = (
    *SNAPSHOT_FIELDS,
    "tags",
    "state_type",
    "updated",
    "empirical_policy",
    "flow_run_run_count",
    "claim_token",
    "worker_id",
    "cache_key",
)


@dataclass(frozen=True)
class Mark:
    """How many rows of each list were pending at one moment, for `PendingWrites.undo_to`."""

    results: int
    states: int
    decisions: int


@dataclass
class PendingWrites:
    """The rows of one batch waiting for `flush`.

    `new_runs` and `updated_runs` hold the run records themselves: their attributes
    at flush time are what is written, so a run changed twice in a batch is written
    once, with its last snapshot.
    """

    new_runs: dict[UUID, RunRecord] = field(default_factory=dict)
    updated_runs: dict[UUID, RunRecord] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.new_runs or self.updated_runs or self.results or self.states or self.decisions
        )

    def mark(self) -> Mark:
        return Mark(len(self.results), len(self.states), len(self.decisions))

    def undo_to(self, mark: Mark) -> None:
        """Drop the results, states and decisions added after `mark`."""
        del self.results[mark.results:]
        del self.states[mark.states:]
        del self.decisions[mark.decisions:]

    def add_state(self, result_values: dict[str, Any] | None, state_values: dict[str, Any]) -> None:
        if result_values is not None:
            self.results.append(result_values)
        self.states.append(state_values)

    async def flush(self, session: AsyncSession) -> None:
        """Send every pending row, one executemany per table, and forget them."""
        if self.new_runs:
            rows = [_values(row, RUN_COLUMNS) for row in self.new_runs.values()]
            await session.execute(INSERT_TASK_RUN, rows)
        if self.results:
            await session.execute(INSERT_RESULT, self.results)
        if self.states:
            await session.execute(INSERT_TASK_RUN_STATE, self.states)
        if self.updated_runs:
            updates = [
                {**_values(row, SNAPSHOT_COLUMNS), "updated_run_id": row.id}
                for row in self.updated_runs.values()
            ]
            await session.execute(UPDATE_TASK_RUN, updates)
        if self.decisions:
            await session.execute(INSERT_DECISION, self.decisions)
        self.clear()

    def clear(self) -> None:
        self.new_runs.clear()
        self.updated_runs.clear()
        self.results.clear()
        self.states.clear()
        self.decisions.clear()


def _values(row: RunRecord, columns: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in columns}
