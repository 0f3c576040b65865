"""One orchestrated transition inside a batch's transaction, and what it leaves to do.

`Transitions` works on the open write session of one batch. For each proposal it locks
the run, returns the stored decision for a transition id decided before, runs the
policy, writes the run's snapshot back and stores the decision. An ABORT, whether a
rule decided it or a rule raised, takes back everything of the transition except the
decision itself. On the direct path that is a savepoint rollback. On the deferred
path, where rows wait for one flush per batch, it drops the transition's pending rows.
What must happen after the commit (jobs to enqueue, events to publish, final runs to
cache) is returned as `Effects`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import pendulum
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from policy.context import (
    Actor,
    FlowOrchestrationContext,
    PolicySettings,
    TaskOrchestrationContext,
)
from policy.orchestrate import orchestrate
from policy.policies import select_flow_policy, select_task_policy
from policy.protocols import EnqueueIntent
from policy.result import OrchestrationResult, SetStateStatus
from policy.runs import FlowRun, TaskRun
from policy.states import State
from queue_server.db.convert import (
    flow_run_from_row,
    task_run_column_values,
    task_run_from_row,
    write_flow_run,
)
from queue_server.db.decisions import decision_values, find_answer, find_answers, insert_decision
from queue_server.db.deferred_storage import (
    DeferredStateRecorder,
    NeedsDirectWrites,
    NoCacheStore,
    NoFlowRuns,
    NoSlots,
)
from queue_server.db.flow_runs import lock_flow_run
from queue_server.db.journal import BatchMemory, CachedRun
from queue_server.db.models import TaskRunRow
from queue_server.db.pending_writes import UPDATE_TASK_RUN, Mark
from queue_server.db.run_records import lock_run_records
from queue_server.db.states import read_flow_run_state
from queue_server.db.storage import (
    EventCollector,
    SqlCacheStore,
    SqlConcurrencySlots,
    SqlFlowRunReader,
    SqlStateRecorder,
)
from queue_server.db.task_runs import lock_task_run_with_state, task_run_view
from queue_server.errors import not_found
from queue_server.jobs import JobSpec
from queue_server.protocol import Envelope, OrchestrationResultView, StateEvent, TaskRunView
from queue_server.settings import Settings

logger = logging.getLogger(__name__)



class ServiceClock:
    """The service's own UTC clock; workers' clocks are never used for a decision."""

    def now(self) -> datetime:
        return pendulum.now("UTC")


@dataclass
class Effects:
    """Work the caller carries out once the transaction that produced it has committed.

    `jobs` go on their task key's queue, `events` on the events channel, and `results`
    (runs that reached a final state) into the Redis result cache.
    """

    jobs: list[JobSpec] = field(default_factory=list)
    events: list[StateEvent] = field(default_factory=list)
    results: list[TaskRunView] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.jobs.extend(other.jobs)
        self.events.extend(other.events)
        self.results.extend(other.results)

    def __bool__(self) -> bool:
        return bool(self.jobs or self.events or self.results)


def policy_settings(settings: Settings) -> PolicySettings:
    return PolicySettings(
        tag_concurrency_slot_wait_seconds=settings.tag_concurrency_slot_wait_seconds,
        max_cache_key_length=settings.max_cache_key_length,
    )


def result_view(run: TaskRun | FlowRun, result: OrchestrationResult) -> OrchestrationResultView:
    return OrchestrationResultView(
        run_id=run.id,
        run_count=run.run_count,
        status=result.status.value,
        state=result.state,
        reason=result.reason,
        delay_seconds=result.delay_seconds,
        rule=result.rule,
    )


class Transitions:
    """Orchestrates proposals on the runs of one open write session.

    Two write paths share this class:

    - direct (the default): each transition writes its rows at once, inside a savepoint
      the caller opened for its request, and a `RequestError` or an unexpected error
      leaves that savepoint to roll back;
    - deferred (`deferred = True`, set by the service for each hot request): the rows
      wait in `memory.pending` until `flush_pending`, and a failed request is taken back
      in memory (`memory.undo`). Only plain task runs go this way; anything else raises
      `NeedsDirectWrites` before writing, and the service applies the request again on
      the direct path.

    Effects of every transition that was kept accumulate in `effects`.
    """

    def __init__(self, session: AsyncSession, settings: Settings, clock: ServiceClock) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.policy_settings = policy_settings(settings)
        self.effects = Effects()
        self.deferred = False
        self.memory = BatchMemory()
        # The JSON form of each result stored as a decision, by the id of its view, so
        # the reply reuses it instead of serializing the view again. The view is kept
        # beside it, so its id cannot be reused for another object.
        self.stored_answers: dict[int, tuple[OrchestrationResultView, dict[str, Any]]] = {}
        # Rows whose new snapshot `_write_back` stored as committed values. The session
        # does not know they changed, so the code that rolls back a savepoint around
        # them must expire them (`expire_written_rows`), as the session would have.
        self.written_rows: list[TaskRunRow] = []

    def expire_written_rows(self, since: int = 0) -> None:
        """Expire the rows written back after the first `since`; their savepoint rolled back."""
        for row in self.written_rows[since:]:
            self.session.expire(row)
        del self.written_rows[since:]

    async def look_up_batch(self, run_ids: list[UUID], transition_ids: list[UUID]) -> None:
        """Lock the batch's task runs and read its decided transitions, one query each.

        Later look-ups of these ids on the deferred path then cost no query.
        """
        locked = await lock_run_records(self.session, run_ids)
        for row, state in locked.values():
            self.memory.runs[row.id] = (row, state)
        self.memory.absent_runs.update(set(run_ids) - set(locked))
        self.memory.answers.update(await find_answers(self.session, transition_ids))
        self.memory.looked_up.update(transition_ids)

    async def flush_pending(self) -> None:
        """Send the deferred rows to SQL; on the direct path, call before any statement."""
        if self.memory.pending:
            await self.memory.pending.flush(self.session)

    async def _locked_run(self, run_id: UUID) -> CachedRun | tuple[None, None]:
        """Lock a run: an ORM row on the direct path, a `RunRecord` on the deferred one."""
        if not self.deferred:
            return await lock_task_run_with_state(self.session, run_id)
        memory = self.memory
        cached = memory.runs.get(run_id)
        if cached is not None:
            return cached
        if run_id in memory.absent_runs:
            return None, None
        found = (await lock_run_records(self.session, [run_id])).get(run_id)
        if found is None:
            memory.absent_runs.add(run_id)
            return None, None
        memory.runs[run_id] = found
        return found

    async def _stored_answer(self, transition_id: UUID) -> dict[str, Any] | None:
        answer = self.memory.answers.get(transition_id)
        if answer is not None or transition_id in self.memory.looked_up:
            return answer
        return await find_answer(self.session, transition_id)

    async def propose_task_state(
        self,
        run_id: UUID,
        proposed: State,
        *,
        actor: Actor,
        transition_id: UUID | None = None,
        force: bool = False,
        worker_id: str | None = None,
        clear_claim: bool = False,
    ) -> OrchestrationResultView:
        """Orchestrate `proposed` on a task run and return the orchestration result.

        A transition id decided before gets the stored result and changes nothing.
        `clear_claim` drops the run's claim token when the transition is kept, as every
        transition the service or an operator makes itself must.
        """
        row, initial = await self._locked_run(run_id)
        if row is None:
            raise not_found("args.run_id", "task run", run_id)
        if transition_id is not None:
            answer = await self._stored_answer(transition_id)
            if answer is not None:
                return OrchestrationResultView.model_validate(answer)
            proposed.state_details.transition_id = transition_id
        if self.deferred:
            _check_plain(row, proposed, force)

        run = task_run_from_row(row, initial)
        stored_run_count = row.run_count
        recorder = (
            DeferredStateRecorder(self.memory.pending, self.clock)
            if self.deferred
            else SqlStateRecorder(self.session, self.clock)
        )
        context = TaskOrchestrationContext(
            run=run,
            initial_state=initial,
            proposed_state=proposed,
            clock=self.clock,
            recorder=recorder,
            events=EventCollector(),
            settings=self.policy_settings,
            actor=actor,
            **self._task_storage(row),
        )
        policy = select_task_policy(run, force=force, variant=self.settings.policy_variant)

        scope = await self._begin_transition()
        result = await orchestrate(context, policy)
        view = result_view(context.run, result)
        if result.status is SetStateStatus.ABORT or context.orchestration_error is not None:
            await scope.roll_back()
            view.run_count = stored_run_count
            if context.orchestration_error is not None:
                logger.warning(
                    "transition of task run %s to %s rolled back: %s",
                    run_id, proposed.type.value, view.reason,
                )
            await self._store_decision(view, transition_id, actor, proposed)
            return view

        written = recorder.written_state(run_id)
        await self._write_back(row, context.run, written, worker_id, clear_claim)
        await self._store_decision(view, transition_id, actor, proposed)
        await scope.keep()
        if self.deferred:
            self.memory.cache_run(row, written if written is not None else initial)
            self.memory.note_queue_move(row.task_key, initial, written)

        self._collect_task_effects(row, written, recorder, context.enqueue_intents)
        return view

    def _task_storage(self, row: TaskRunRow) -> dict[str, Any]:
        if self.deferred:
            return {"cache": NoCacheStore(), "slots": NoSlots(), "flow_runs": NoFlowRuns()}
        return {
            "cache": SqlCacheStore(self.session, self.clock),
            "slots": SqlConcurrencySlots(
                self.session,
                self.clock,
                untagged_run_ids=frozenset() if row.tags else frozenset((row.id,)),
            ),
            "flow_runs": SqlFlowRunReader(self.session),
        }

    async def _begin_transition(self) -> TransitionScope:
        """Start one transition's undo scope: a savepoint, or a mark in the pending writes."""
        if self.deferred:
            return TransitionScope(self, mark=self.memory.pending.mark())
        return TransitionScope(
            self, savepoint=await self.session.begin_nested(), written_before=len(self.written_rows)
        )

    async def propose_flow_state(
        self,
        run_id: UUID,
        proposed: State,
        *,
        actor: Actor,
        transition_id: UUID | None = None,
        force: bool = False,
    ) -> OrchestrationResultView:
        """Orchestrate `proposed` on a flow run and return the orchestration result."""
        row = await lock_flow_run(self.session, run_id)
        if row is None:
            raise not_found("args.run_id", "flow run", run_id)
        if transition_id is not None:
            answer = await find_answer(self.session, transition_id)
            if answer is not None:
                return OrchestrationResultView.model_validate(answer)
            proposed.state_details.transition_id = transition_id

        initial = await read_flow_run_state(self.session, row.state_id)
        run = flow_run_from_row(row, initial)
        recorder = SqlStateRecorder(self.session, self.clock)
        context = FlowOrchestrationContext(
            run=run,
            initial_state=initial,
            proposed_state=proposed,
            clock=self.clock,
            recorder=recorder,
            events=EventCollector(),
            subflow_parents=SubflowParents(self),
            settings=self.policy_settings,
            actor=actor,
        )

        written_before = len(self.written_rows)
        savepoint = await self.session.begin_nested()
        result = await orchestrate(context, select_flow_policy(force=force))
        view = result_view(context.run, result)
        if result.status is SetStateStatus.ABORT or context.orchestration_error is not None:
            await savepoint.rollback()
            self.expire_written_rows(written_before)
            await self._store_decision(view, transition_id, actor, proposed, run_kind="flow_run")
            return view

        write_flow_run(row, context.run)
        row.updated = self.clock.now()
        await self._store_decision(view, transition_id, actor, proposed, run_kind="flow_run")
        await savepoint.commit()
        for written_run, state in recorder.written:
            self.effects.events.append(_event(written_run, state))
        return view

    async def _write_back(
        self,
        row: TaskRunRow,
        run: TaskRun,
        written: State | None,
        worker_id: str | None,
        clear_claim: bool,
    ) -> None:
        """Write the run's new snapshot to its row.

        The direct path sends one Core UPDATE at once, which costs less than the unit
        of work would. The loaded row gets the same values as committed ones, so the
        session has nothing to flush for it. The deferred path changes the run record
        in memory and leaves the write to the batch's flush.
        """
        values = task_run_column_values(run)
        values["updated"] = self.clock.now()
        if written is not None:
            values["cache_key"] = (
                written.state_details.cache_key if written.is_running() else None
            )
            is_claim = written.is_pending() and written.state_details.claim_token is not None
            if is_claim and worker_id is not None:
                values["worker_id"] = worker_id
        if clear_claim:
            values["claim_token"] = None

        if self.deferred:
            self.memory.change_row(row, values)
            return
        await self.session.execute(UPDATE_TASK_RUN, {**values, "updated_run_id": row.id})
        for name, value in values.items():
            set_committed_value(row, name, value)
        self.written_rows.append(row)

    async def _store_decision(
        self,
        view: OrchestrationResultView,
        transition_id: UUID | None,
        actor: str,
        proposed: State,
        run_kind: str = "task_run",
    ) -> None:
        answer = view.model_dump(mode="json")
        self.stored_answers[id(view)] = (view, answer)
        values = decision_values(
            view=view,
            answer=answer,
            transition_id=transition_id,
            actor=actor,
            proposed_type=proposed.type.value,
            proposed_name=proposed.name,
            now=self.clock.now(),
            run_kind=run_kind,
        )
        if transition_id is not None:
            self.memory.add_answer(transition_id, answer)
        if self.deferred:
            self.memory.pending.decisions.append(values)
        else:
            await insert_decision(self.session, values)

    def _collect_task_effects(
        self,
        row: TaskRunRow,
        written: State | None,
        recorder: SqlStateRecorder,
        intents: list[EnqueueIntent],
    ) -> None:
        for intent in intents:
            job = job_for(row, intent.state_id, intent.state_name, intent.scheduled_time)
            self.effects.jobs.append(job)
        for written_run, state in recorder.written:
            self.effects.events.append(_event(written_run, state))
        if written is not None and written.is_final():
            self.effects.results.append(task_run_view(row, written))


@dataclass
class TransitionScope:
    """The undo scope of one transition: its savepoint on the direct path, else a mark."""

    transitions: Transitions
    savepoint: Any = None
    written_before: int = 0
    mark: Mark | None = None

    async def roll_back(self) -> None:
        if self.mark is not None:
            self.transitions.memory.pending.undo_to(self.mark)
            return
        await self.savepoint.rollback()
        self.transitions.expire_written_rows(self.written_before)

    async def keep(self) -> None:
        if self.savepoint is not None:
            await self.savepoint.commit()


def _check_plain(row: TaskRunRow, proposed: State, force: bool) -> None:
    """Raise `NeedsDirectWrites` unless the deferred path can take this transition."""
    if force:
        raise NeedsDirectWrites("a forced transition")
    if row.tags or row.flow_run_id is not None:
        raise NeedsDirectWrites("a run with tags or a parent flow run")
    if row.submitted_cache_key or row.refresh_cache or row.cache_key:
        raise NeedsDirectWrites("a run with a cache key")
    if proposed.state_details.cache_key:
        raise NeedsDirectWrites("a state with a cache key")


class SubflowParents:
    """Mirrors a subflow's validated state onto its parent's tracking task run, forced."""

    def __init__(self, transitions: Transitions) -> None:
        self.transitions = transitions

    async def set_parent_task_state(self, task_run_id: UUID, state: State) -> None:
        await self.transitions.propose_task_state(
            task_run_id, state, actor="service", force=True, clear_claim=True
        )


def job_for(
    row: TaskRunRow, state_id: UUID, state_name: str, scheduled_time: datetime | None
) -> JobSpec:
    """Build the queue job of one Scheduled state of a background run."""
    return JobSpec(
        run_id=row.id,
        state_id=state_id,
        state_name=state_name,
        task_key=row.task_key,
        due=scheduled_time or row.next_scheduled_start_time or row.created,
        parameters=Envelope.model_validate(row.parameters or {}),
        cache_key=row.submitted_cache_key,
        cache_expiration=row.submitted_cache_expiration,
        refresh_cache=row.refresh_cache,
        persist_result=row.persist_result,
        timeout_seconds=row.timeout_seconds,
    )


def _event(run: TaskRun | FlowRun, state: State) -> StateEvent:
    return StateEvent(
        run_id=run.id,
        task_key=run.task_key if isinstance(run, TaskRun) else None,
        state_id=state.id,
        state_type=state.type,
        state_name=state.name,
        timestamp=state.timestamp,
    )

