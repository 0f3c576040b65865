"""The undo record of one request in a batch's memory, so a failed request can be taken back.

On the deferred path a request writes nothing to SQL: its rows wait in `PendingWrites`
and its runs' new snapshots live on their row objects. Taking it back is therefore
a matter of memory. `RequestJournal` records the value of everything the request
changes before its first change; `BatchMemory.undo` puts those values back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from policy.states import State
from queue_server.db.pending_writes import SNAPSHOT_COLUMNS, Mark, PendingWrites
from queue_server.db.run_records import RunRecord

CachedRun = tuple[RunRecord, State | None]


@dataclass
class RequestJournal:
    """The batch's memory as it was before one request changed it."""

    mark: Mark
    queued: dict[str, int]
    queue_moves: dict[str, int]
    rows: dict[UUID, tuple[RunRecord, dict[str, Any]]] = field(default_factory=dict)
    cached_runs: dict[UUID, CachedRun | None] = field(default_factory=dict)
    newly_updated: list[UUID] = field(default_factory=list)
    new_runs: list[UUID] = field(default_factory=list)
    answers: list[UUID] = field(default_factory=list)


@dataclass
class BatchMemory:
    """The batch's state kept outside SQL: locked runs, decided transitions, pending rows.

    - `runs`: each run locked in this batch, with its current state, as the batch left it;
    - `absent_runs`: run ids looked up in this batch and not found;
    - `answers`: the reply of each transition id decided, in SQL or in this batch;
    - `looked_up`: transition ids whose decision was looked up at the start of the batch,
      so a missing reply means "never decided" with no query;
    - `queued`: Scheduled runs per task key when first needed in this batch, not
      counting `queue_moves`;
    - `queue_moves`: per task key, runs that entered Scheduled less runs that left
      it, on the deferred path of this batch;
    - `counts_from_sql`: a request took the direct path, whose moves are not in
      `queue_moves`, so counts must be read from SQL for the rest of the batch;
    - `pending`: the rows waiting for the flush.
    """

    runs: dict[UUID, CachedRun] = field(default_factory=dict)
    absent_runs: set[UUID] = field(default_factory=set)
    answers: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    looked_up: set[UUID] = field(default_factory=set)
    queued: dict[str, int] = field(default_factory=dict)
    queue_moves: dict[str, int] = field(default_factory=dict)
    counts_from_sql: bool = False
    pending: PendingWrites = field(default_factory=PendingWrites)
    journal: RequestJournal | None = None

    def begin_request(self) -> None:
        self.journal = RequestJournal(
            mark=self.pending.mark(),
            queued=dict(self.queued),
            queue_moves=dict(self.queue_moves),
        )

    def forget_runs(self) -> None:
        """Drop what is known of runs, after writes this memory did not follow."""
        self.runs.clear()
        self.absent_runs.clear()
        self.queued.clear()
        self.queue_moves.clear()
        self.counts_from_sql = True

    def queued_now(self, task_key: str) -> int | None:
        """Return the task key's Scheduled runs as this batch leaves them, if counted."""
        base = self.queued.get(task_key)
        return None if base is None else base + self.queue_moves.get(task_key, 0)

    def note_queue_move(self, task_key: str, before: State | None, after: State | None) -> None:
        """Count a kept transition that moved a run into or out of Scheduled."""
        if after is None:
            return
        was_queued = before is not None and before.is_scheduled()
        if was_queued != after.is_scheduled():
            change = 1 if after.is_scheduled() else -1
            self.queue_moves[task_key] = self.queue_moves.get(task_key, 0) + change

    def cache_run(self, row: RunRecord, state: State | None) -> None:
        journal = self.journal
        if journal is not None and row.id not in journal.cached_runs:
            journal.cached_runs[row.id] = self.runs.get(row.id)
        self.runs[row.id] = (row, state)

    def add_new_run(self, row: RunRecord) -> None:
        self.pending.new_runs[row.id] = row
        self.absent_runs.discard(row.id)
        if self.journal is not None:
            self.journal.new_runs.append(row.id)
        self.cache_run(row, None)

    def change_row(self, row: RunRecord, values: dict[str, Any]) -> None:
        """Give `row` new snapshot values, remembered for `undo` and written at the flush."""
        journal = self.journal
        if journal is not None and row.id not in journal.rows:
            journal.rows[row.id] = (row, {name: getattr(row, name) for name in SNAPSHOT_COLUMNS})
        pending = self.pending
        if row.id not in pending.new_runs and row.id not in pending.updated_runs:
            pending.updated_runs[row.id] = row
            if journal is not None:
                journal.newly_updated.append(row.id)
        for name, value in values.items():
            setattr(row, name, value)

    def add_answer(self, transition_id: UUID, answer: dict[str, Any]) -> None:
        self.answers[transition_id] = answer
        if self.journal is not None:
            self.journal.answers.append(transition_id)

    def undo(self) -> None:
        """Put back everything the current request changed in memory."""
        journal = self.journal
        if journal is None:
            return
        self.pending.undo_to(journal.mark)
        for row, values in journal.rows.values():
            for name, value in values.items():
                setattr(row, name, value)
        for run_id in journal.newly_updated:
            self.pending.updated_runs.pop(run_id, None)
        for run_id in journal.new_runs:
            self.pending.new_runs.pop(run_id, None)
            self.absent_runs.add(run_id)
        for run_id, cached in journal.cached_runs.items():
            if cached is None:
                self.runs.pop(run_id, None)
            else:
                self.runs[run_id] = cached
        for transition_id in journal.answers:
            self.answers.pop(transition_id, None)
        self.queued = journal.queued
        self.queue_moves = journal.queue_moves
        self.begin_request()
