"""The transition service: the one class every transport calls to change or read runs.

The Redis request loop calls `apply_batch`; the reaper, the reconciler, the CLI and the
operator HTTP API call the other methods. Everything that changes state returns the
effects to carry out after the commit (jobs, events, results) next to its value, and
no effect is ever produced for a transaction that did not commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from policy.protocols import ConcurrencyLimit
from policy.states import TERMINAL_STATES, Scheduled, State, StateType
from queue_server.db import limits as limit_rows
from queue_server.db.decisions import (
    find_decision,
    first_decision,
    prune_decisions,
    read_decisions,
)
from queue_server.db.deferred_storage import NeedsDirectWrites
from queue_server.db.engine import Database
from queue_server.db.faults import storage_fault_from
from queue_server.db.flow_runs import insert_flow_run, lock_flow_run
from queue_server.db.journal import BatchMemory
from queue_server.db.models import FlowRunRow, TaskRunRow
from queue_server.db.run_records import RunRecord
from queue_server.db.states import (
    read_flow_run_state,
    read_task_run_state,
    task_run_history,
)
from queue_server.db.task_runs import (
    count_queued,
    filter_task_runs,
    insert_task_run,
    lock_task_run,
    queue_counts,
    run_ids_of_worker,
    runs_by_worker,
    scheduled_background_runs,
    task_run_view,
)
from queue_server.db.transitions import Effects, ServiceClock, Transitions, job_for
from queue_server.errors import RequestError, StorageFault, invalid, not_found
from queue_server.jobs import JobSpec
from queue_server.protocol import (
    ClaimAndStartArgs,
    CreateFlowRunArgs,
    CreateTaskRunArgs,
    DecisionView,
    ErrorInfo,
    FlowRunCreate,
    FlowRunView,
    OrchestrationResultView,
    ProposeStateArgs,
    ReleaseWorkerArgs,
    Reply,
    Request,
    RunIdArgs,
    RunIdsArgs,
    StateCreate,
    TaskRunCreate,
    TaskRunView,
)
from queue_server.queued_counts import QueuedCounts
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
ArgsModel = TypeVar("ArgsModel", bound=BaseModel)


class DeferredBatchFailed(Exception):
    """A statement failed on the deferred path, where no savepoint isolates the request."""


# Requests that may run on the deferred path, and the fields naming their transitions.
DEFERRABLE_OPS = frozenset({"create_task_run", "claim_and_start", "propose_state"})
TRANSITION_ID_FIELDS = ("transition_id", "claim_transition_id", "start_transition_id")


@dataclass
class BatchOutcome:
    """The replies to one batch, in request order, and the effects of its commit."""

    replies: list[tuple[str, Reply]] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)


class TransitionService:
    """Applies proposed transitions to runs stored in SQL, and reads them back.

    Construction: ``TransitionService(database, settings)``; the schema must exist
    (`queue_server.db.upgrade_database`). The service clock is its own UTC clock.

    Batches (the request transport):

    - ``await apply_batch(requests) -> BatchOutcome``: one transaction for the batch.
      Requests run in run-id order, each in its own savepoint, with its run locked
      (``SELECT ... FOR UPDATE`` on PostgreSQL, the database write lock on SQLite),
      then one commit. ``outcome.replies`` contains a ``(client_id, Reply)`` per request in
      the order given. A bad request gets ``Reply(ok=False, error=ErrorInfo(code,
      message, field))`` and writes nothing. A rule that raises gets an ABORT reply
      and its savepoint rolls back. A storage fault rolls back the whole batch and
      raises `StorageFault` with no replies, so the senders resend.

    State changes by the service's loops and by operators, each its own transaction,
    each returning ``(value, Effects)``:

    - ``propose_state(run_id, state, *, force=False, actor="operator", transition_id=None)``
    - ``cancel_run(run_id)``: a Scheduled or Paused run becomes Cancelled; a Pending or
      Running run becomes Cancelling and its worker, which must stop it, proposes
      Cancelled with no claim token, because the cancel cleared the token.
    - ``release_worker(worker_id, run_ids=None)``: the worker's runs move as for an
      expired heartbeat: Pending back to Scheduled (the attempt does not count),
      Running to AwaitingRetry due after the retry delay while attempts remain and to
      Crashed after the last, Cancelling to Cancelled. The value lists the answers.

    Reads: ``workers_holding_runs()``, ``scheduled_background_jobs()``, ``read_run``,
    ``read_states``, ``read_decisions``, ``filter_runs``, ``queue_counts()``.
    Tag concurrency limits: ``create_limit``, ``read_limit``, ``list_limits``,
    ``delete_limit``, ``reset_limit``. Upkeep: ``prune_decisions()``.

    Unknown run ids and tags raise `RequestError` with code ``not_found``; database
    faults raise `StorageFault`.
    """

    def __init__(
        self, database: Database, settings: Settings, *, replica_id: str | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.clock = ServiceClock()
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.queued_counts = QueuedCounts()
        self._operations: dict[str, Callable[[Transitions, dict[str, Any]], Awaitable[Any]]] = {
            "create_task_run": self._create_task_run_request,
            "create_flow_run": self._create_flow_run_request,
            "propose_state": self._propose_state_request,
            "claim_and_start": self._claim_and_start_request,
            "read_run": self._read_run_request,
            "read_runs": self._read_runs_request,
            "release_worker": self._release_worker_request,
            "cancel_run": self._cancel_run_request,
            "ping": self._ping_request,
        }

    # -- batches ---------------------------------------------------------------------

    async def apply_batch(self, requests: list[Request]) -> BatchOutcome:
        """Apply a batch of requests in one transaction; see the class docstring.

        The batch first runs on the deferred path, where its plain transitions write
        their rows in one flush at the end. A database error there, which no request
        can be blamed for, sends the whole batch again down the direct path, where each
        request has its own savepoint.
        """
        try:
            return await self._apply_batch_once(requests, deferred=True)
        except DeferredBatchFailed as failure:
            logger.warning(
                "batch of %d requests failed on the deferred path (%s); applying it again "
                "with a savepoint per request", len(requests), failure,
            )
            return await self._apply_batch_once(requests, deferred=False)

    async def _apply_batch_once(self, requests: list[Request], *, deferred: bool) -> BatchOutcome:
        outcome = BatchOutcome()
        replies: list[Reply | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda index: _lock_order(requests[index]))
        try:
            async with self.database.write_session() as session:
                transitions = Transitions(session, self.settings, self.clock)
                if deferred:
                    await transitions.look_up_batch(*_batch_ids(requests))
                for index in order:
                    replies[index] = await self._apply_request(
                        transitions, requests[index], deferred=deferred
                    )
                    outcome.effects.extend(transitions.effects)
                await transitions.flush_pending()
                await session.commit()
            self._keep_queue_counts(transitions.memory)
        except (StorageFault, DeferredBatchFailed):
            raise
        except (SQLAlchemyError, OSError) as error:
            fault = _as_fault(error)
            if deferred and fault is error:
                raise DeferredBatchFailed(f"{type(error).__name__}: {error}") from error
            raise fault from error
        outcome.replies = [
            (request.client_id, reply) for request, reply in zip(requests, replies, strict=True)
        ]
        return outcome

    async def _apply_request(
        self, transitions: Transitions, request: Request, *, deferred: bool = False
    ) -> Reply:
        transitions.effects = Effects()
        transitions.stored_answers = {}
        if deferred and request.op in DEFERRABLE_OPS:
            reply = await self._apply_deferred(transitions, request)
            if reply is not None:
                return reply
        return await self._apply_direct(transitions, request)

    async def _apply_deferred(self, transitions: Transitions, request: Request) -> Reply | None:
        """Apply a request with its writes left pending; None means "use the direct path"."""
        memory = transitions.memory
        memory.begin_request()
        transitions.deferred = True
        try:
            result = await self._operations[request.op](transitions, request.args)
        except NeedsDirectWrites as reason:
            memory.undo()
            transitions.effects = Effects()
            logger.debug("request %s takes the direct path: %s", request.request_id, reason)
            return None
        except RequestError as error:
            memory.undo()
            transitions.effects = Effects()
            _log_rejected(request, error)
            return Reply(request_id=request.request_id, ok=False, error=error.to_info())
        except (StorageFault, SQLAlchemyError, OSError):
            # A statement failed with no savepoint around it; `apply_batch` decides.
            raise
        except Exception as error:  # noqa: BLE001 - one bad request must not fail the batch
            memory.undo()
            transitions.effects = Effects()
            _log_failed(request, error)
            return _internal_error(request)
        finally:
            transitions.deferred = False
        return Reply(
            request_id=request.request_id,
            ok=True,
            result=_jsonable(result, transitions.stored_answers),
        )

    async def _apply_direct(self, transitions: Transitions, request: Request) -> Reply:
        await transitions.flush_pending()
        memory = transitions.memory
        memory.begin_request()
        transitions.written_rows = []
        savepoint = await transitions.session.begin_nested()
        try:
            result = await self._operations[request.op](transitions, request.args)
        except RequestError as error:
            await savepoint.rollback()
            transitions.expire_written_rows()
            memory.undo()
            transitions.effects = Effects()
            _log_rejected(request, error)
            return Reply(request_id=request.request_id, ok=False, error=error.to_info())
        except StorageFault:
            raise
        except (SQLAlchemyError, OSError) as error:
            fault = storage_fault_from(error)
            if fault is not error:
                raise fault from error
            await self._rollback_failed_request(savepoint, transitions, request, error)
            return _internal_error(request)
        except Exception as error:  # noqa: BLE001 - one bad request must not fail the batch
            await self._rollback_failed_request(savepoint, transitions, request, error)
            return _internal_error(request)
        finally:
            # The direct path wrote without updating the batch's memory of runs.
            memory.forget_runs()
        await savepoint.commit()
        result = _jsonable(result, transitions.stored_answers)
        return Reply(request_id=request.request_id, ok=True, result=result)

    async def _rollback_failed_request(
        self, savepoint: Any, transitions: Transitions, request: Request, error: BaseException
    ) -> None:
        _log_failed(request, error)
        await savepoint.rollback()
        transitions.expire_written_rows()
        transitions.memory.undo()
        transitions.effects = Effects()

    # -- request operations ----------------------------------------------------------

    async def _create_task_run_request(
        self, transitions: Transitions, args: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = parse_args(CreateTaskRunArgs, args)
        self._check_task_run_create(parsed.run)
        run_view, orchestration = await self._create_task_run(
            transitions, parsed.run, parsed.transition_id
        )
        return {"run": run_view, "orchestration": orchestration}

    async def _create_flow_run_request(
        self, transitions: Transitions, args: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = parse_args(CreateFlowRunArgs, args)
        run_view, orchestration = await self._create_flow_run(
            transitions, parsed.run, parsed.state, parsed.transition_id
        )
        return {"run": run_view, "orchestration": orchestration}

    async def _propose_state_request(
        self, transitions: Transitions, args: dict[str, Any]
    ) -> OrchestrationResultView:
        if "force" in args:
            raise RequestError(
                "forbidden",
                "force is not accepted over the request transport; forced state changes "
                "are an operator action through the HTTP API or the CLI",
                "args.force",
            )
        parsed = parse_args(ProposeStateArgs, args)
        self._check_state(parsed.state, "args.state")
        is_claim = parsed.state.state_details.claimed_state_id is not None
        if is_claim and parsed.worker_id is None:
            # The reaper finds a dead worker's runs by the worker id stored at the claim.
            raise invalid(
                "args.worker_id",
                "args.worker_id is missing; a claim (a state naming claimed_state_id) "
                "must name the worker that makes it",
            )
        proposed = parsed.state.to_state(self.clock.now())
        if parsed.kind == "flow_run":
            return await transitions.propose_flow_state(
                parsed.run_id, proposed, actor="worker", transition_id=parsed.transition_id
            )
        return await transitions.propose_task_state(
            parsed.run_id,
            proposed,
            actor="worker",
            transition_id=parsed.transition_id,
            worker_id=parsed.worker_id,
        )

    async def _claim_and_start_request(
        self, transitions: Transitions, args: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = parse_args(ClaimAndStartArgs, args)
        running = parsed.running or StateCreate(type=StateType.RUNNING)
        if running.type is not StateType.RUNNING:
            raise invalid(
                "args.running.type",
                f"args.running.type is {running.type.value}; the started state must be RUNNING",
            )
        self._check_state(running, "args.running")

        claim = State(type=StateType.PENDING, timestamp=self.clock.now())
        claim.state_details.claimed_state_id = parsed.claimed_state_id
        claim_view = await transitions.propose_task_state(
            parsed.run_id,
            claim,
            actor="worker",
            transition_id=parsed.claim_transition_id,
            worker_id=parsed.worker_id,
        )
        if claim_view.status != "ACCEPT" or claim_view.state is None:
            return {"claim": claim_view, "start": None}

        start = running.to_state(self.clock.now())
        start.state_details.claim_token = claim_view.state.state_details.claim_token
        start_view = await transitions.propose_task_state(
            parsed.run_id,
            start,
            actor="worker",
            transition_id=parsed.start_transition_id,
            worker_id=parsed.worker_id,
        )
        return {"claim": claim_view, "start": start_view}

    async def _read_run_request(self, transitions: Transitions, args: dict[str, Any]) -> Any:
        parsed = parse_args(RunIdArgs, args)
        return await self._read_task_run(transitions.session, parsed.run_id)

    async def _read_runs_request(self, transitions: Transitions, args: dict[str, Any]) -> Any:
        parsed = parse_args(RunIdsArgs, args)
        views = []
        for run_id in parsed.run_ids:
            row = await transitions.session.get(TaskRunRow, run_id)
            if row is not None:
                state = await read_task_run_state(transitions.session, row.state_id)
                views.append(task_run_view(row, state))
        return views

    async def _release_worker_request(
        self, transitions: Transitions, args: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = parse_args(ReleaseWorkerArgs, args)
        answers = await self._release_runs(transitions, parsed.worker_id, parsed.run_ids)
        return {"released": [answer.run_id for answer in answers]}

    async def _cancel_run_request(self, transitions: Transitions, args: dict[str, Any]) -> Any:
        parsed = parse_args(RunIdArgs, args)
        return await self._cancel(transitions, parsed.run_id)

    async def _ping_request(self, transitions: Transitions, args: dict[str, Any]) -> Any:
        return {"replica_id": self.replica_id}

    # -- creation --------------------------------------------------------------------

    def _check_task_run_create(self, run: TaskRunCreate) -> None:
        size = len(_canonical_json(run.parameters.model_dump(mode="json")).encode())
        if size > self.settings.max_argument_bytes:
            raise invalid(
                "args.run.parameters",
                f"parameters of task {run.task_key!r} are {size} bytes serialized, over the "
                f"limit of {self.settings.max_argument_bytes} bytes "
                "(TASKGATE_MAX_ARGUMENT_BYTES); pass a reference to the data instead",
            )
        self._check_cache_key(run.cache_key, "args.run.cache_key")
        for name in ("scheduled_time", "cache_expiration"):
            value: datetime | None = getattr(run, name)
            if value is not None and value.tzinfo is None:
                raise invalid(
                    f"args.run.{name}",
                    f"args.run.{name} {value.isoformat()} has no timezone; send an aware UTC time",
                )

    def _check_state(self, state: StateCreate, field_name: str) -> None:
        cache_key = state.state_details.cache_key
        self._check_cache_key(cache_key, f"{field_name}.state_details.cache_key")

    def _check_cache_key(self, cache_key: str | None, field_name: str) -> None:
        limit = self.settings.max_cache_key_length
        if cache_key is not None and len(cache_key) > limit:
            raise invalid(
                field_name,
                f"{field_name} is {len(cache_key)} characters long, over the limit of {limit} "
                "(TASKGATE_MAX_CACHE_KEY_LENGTH); use a shorter key, such as a hash",
            )

    async def _create_task_run(
        self, transitions: Transitions, run: TaskRunCreate, transition_id: UUID
    ) -> tuple[TaskRunView, OrchestrationResultView]:
        """Create a background run and orchestrate its first Scheduled state.

        A resend (same run id, same contents) gets the stored orchestration result, and
        the same id with other contents is a conflict. A full queue is rejected before
        anything is written.
        """
        session = transitions.session
        digest = create_digest(run)
        if transitions.deferred:
            return await self._create_new_task_run(transitions, run, transition_id, digest)
        row = await lock_task_run(session, run.id)
        if row is None:
            self._check_queue_room(run.task_key, await count_queued(session, run.task_key))
            now = self.clock.now()
            inserted = await insert_task_run(session, new_task_run_values(run, digest, now))
            if inserted:
                scheduled = Scheduled(
                    scheduled_time=run.scheduled_time or now, deferred=True, timestamp=now
                )
                orchestration = await transitions.propose_task_state(
                    run.id, scheduled, actor="client", transition_id=transition_id
                )
                row = await session.get(TaskRunRow, run.id)
                return task_run_view(row, orchestration.state), orchestration
            # Another replica created the run between our look-up and our insert.
            row = await lock_task_run(session, run.id)

        if row.create_digest != digest:
            raise RequestError(
                "conflict",
                f"task run {run.id} already exists with other contents; "
                "mint a new run id for a new run",
                "args.run.id",
            )
        decided = await find_decision(session, transition_id) or await first_decision(
            session, run.id
        )
        # NOTE: once the first decision is pruned, a resent create gets ACCEPT with the
        # run's current state instead of the original result.
        orchestration = (
            OrchestrationResultView.model_validate(decided.answer)
            if decided is not None
            else OrchestrationResultView(
                run_id=run.id,
                status="ACCEPT",
                state=await read_task_run_state(session, row.state_id),
            )
        )
        return await self._task_run_view(session, row), orchestration

    async def _create_new_task_run(
        self, transitions: Transitions, run: TaskRunCreate, transition_id: UUID, digest: str
    ) -> tuple[TaskRunView, OrchestrationResultView]:
        """Create a plain background run on the deferred path; see `_create_task_run`.

        A resend, or a run the deferred path cannot take, raises `NeedsDirectWrites`.
        The queue count comes from `QueuedCounts`, and the batch adds its creates to it.
        """
        if run.tags or run.cache_key or run.refresh_cache or run.flow_run_id is not None:
            raise NeedsDirectWrites("a run with tags, a cache key or a parent flow run")
        memory = transitions.memory
        # A resend is found by its transition id, or by its run locked in this batch. A
        # run id that exists with a new transition id fails the flush's INSERT, so the
        # batch is applied again on the direct path, which replies to it.
        if transition_id in memory.answers or run.id in memory.runs:
            raise NeedsDirectWrites("a resent create")
        queued = memory.queued_now(run.task_key)
        if queued is None:
            queued = await self._queued_before_batch(transitions, run.task_key)
        self._check_queue_room(run.task_key, queued)

        now = self.clock.now()
        row = RunRecord(new_task_run_values(run, digest, now))
        memory.add_new_run(row)
        scheduled = Scheduled(
            scheduled_time=run.scheduled_time or now, deferred=True, timestamp=now
        )
        orchestration = await transitions.propose_task_state(
            run.id, scheduled, actor="client", transition_id=transition_id
        )
        return task_run_view(row, orchestration.state), orchestration

    async def _queued_before_batch(self, transitions: Transitions, task_key: str) -> int:
        """Count the key's Scheduled runs as the batch's pending rows will leave them.

        The kept count describes SQL before this batch, as do SQL's own rows until the
        flush, so the batch's own moves are added to either. After a request on the
        direct path flushed the batch, only a fresh count from SQL is right.
        """
        memory = transitions.memory
        queued = None if memory.counts_from_sql else self.queued_counts.get(task_key)
        if queued is None:
            queued = await count_queued(transitions.session, task_key)
            if not memory.counts_from_sql:
                self.queued_counts.counted(task_key, queued)
        memory.queued[task_key] = queued
        return queued + memory.queue_moves.get(task_key, 0)

    def _keep_queue_counts(self, memory: BatchMemory) -> None:
        """After a commit, move the kept counts by the batch's Scheduled moves."""
        if memory.counts_from_sql:
            self.queued_counts.clear()
            return
        for task_key, change in memory.queue_moves.items():
            self.queued_counts.add(task_key, change)

    def _check_queue_room(self, task_key: str, queued: int) -> None:
        # NOTE: replicas count without a shared lock, and each replica keeps its count
        # of a key for up to a second (`QueuedCounts`), following only its own moves.
        # With several replicas, one task key may overshoot the limit by about a
        # second of the other replicas' creates, or refuse for up to a second after
        # another replica's claims made room.
        if queued >= self.settings.max_queued_per_task_key:
            raise RequestError(
                "queue_full",
                f"the queue of task {task_key!r} holds {queued} Scheduled runs, the limit "
                f"(TASKGATE_MAX_QUEUED_PER_TASK_KEY={self.settings.max_queued_per_task_key}); "
                "retry later",
                "args.run.task_key",
            )

    async def _create_flow_run(
        self,
        transitions: Transitions,
        run: FlowRunCreate,
        state: StateCreate | None,
        transition_id: UUID,
    ) -> tuple[FlowRunView, OrchestrationResultView | None]:
        session = transitions.session
        digest = create_digest(run)
        now = self.clock.now()
        inserted = await insert_flow_run(session, new_flow_run_values(run, digest, now))
        row = await lock_flow_run(session, run.id)
        if not inserted:
            if row.create_digest != digest:
                raise RequestError(
                    "conflict",
                    f"flow run {run.id} already exists with other contents; "
                    "mint a new run id for a new run",
                    "args.run.id",
                )
            decided = await find_decision(session, transition_id)
            answer = (
                OrchestrationResultView.model_validate(decided.answer) if decided else None
            )
            return await self._flow_run_view(session, row), answer
        if state is None:
            return await self._flow_run_view(session, row), None
        orchestration = await transitions.propose_flow_state(
            run.id, state.to_state(now), actor="client", transition_id=transition_id
        )
        return await self._flow_run_view(session, row), orchestration

    # -- cancel and release ----------------------------------------------------------

    async def _cancel(self, transitions: Transitions, run_id: UUID) -> OrchestrationResultView:
        row = await lock_task_run(transitions.session, run_id)
        if row is None:
            raise not_found("args.run_id", "task run", run_id)
        current = row.state_type
        if current in FINAL_TYPES:
            return OrchestrationResultView(
                run_id=run_id,
                status="ABORT",
                state=await read_task_run_state(transitions.session, row.state_id),
                reason=f"Run is already {current}; there is nothing to cancel.",
            )
        held_by_worker = current in (StateType.PENDING.value, StateType.RUNNING.value)
        target = StateType.CANCELLING if held_by_worker else StateType.CANCELLED
        proposed = State(
            type=target, timestamp=self.clock.now(), message="Cancelled by an operator."
        )
        return await transitions.propose_task_state(
            run_id, proposed, actor="operator", clear_claim=True
        )

    async def _release_runs(
        self, transitions: Transitions, worker_id: str, run_ids: list[UUID] | None
    ) -> list[OrchestrationResultView]:
        answers = []
        held = await run_ids_of_worker(transitions.session, worker_id, run_ids)
        for run_id in held:
            answer = await self._release_run(transitions, worker_id, run_id)
            if answer is not None:
                answers.append(answer)
        return answers

    async def _release_run(
        self, transitions: Transitions, worker_id: str, run_id: UUID
    ) -> OrchestrationResultView | None:
        row = await lock_task_run(transitions.session, run_id)
        if row is None or row.worker_id != worker_id or row.state_type not in HELD_TYPES:
            return None
        proposed = self._release_target(row, worker_id)
        # The transition updates `row` in place, so keep the state the run was held in.
        held_in = row.state_type
        answer = await transitions.propose_task_state(
            run_id, proposed, actor="service", clear_claim=True
        )
        logger.info(
            "released run %s of worker %s from %s: %s to %s",
            run_id, worker_id, held_in, answer.status,
            answer.state.name if answer.state else None,
        )
        return answer

    def _release_target(self, row: TaskRunRow, worker_id: str) -> State:
        """Choose the state a released run moves to, from the state it was held in."""
        now = self.clock.now()
        message = f"Worker {worker_id} stopped while holding the run."
        if row.state_type == StateType.PENDING.value:
            # The run never entered Running, so the attempt does not count.
            return Scheduled(scheduled_time=now, deferred=True, timestamp=now, message=message)
        if row.state_type == StateType.CANCELLING.value:
            return State(type=StateType.CANCELLED, timestamp=now, message=message)
        policy = row.empirical_policy or {}
        retries = policy.get("retries")
        if retries is not None and row.run_count <= retries:
            delay = retry_delay_seconds(policy, row.run_count)
            return Scheduled(
                scheduled_time=now + timedelta(seconds=delay),
                name="AwaitingRetry",
                deferred=True,
                timestamp=now,
                message=message,
            )
        return State(type=StateType.CRASHED, timestamp=now, message=message)

    # -- state changes by loops and operators ----------------------------------------

    async def propose_state(
        self,
        run_id: UUID,
        state: StateCreate,
        *,
        force: bool = False,
        actor: str = "operator",
        transition_id: UUID | None = None,
    ) -> tuple[OrchestrationResultView, Effects]:
        """Propose a state on a task run as an operator (or the service) and commit it.

        `force` selects the minimal policy. The claim token is cleared whenever the
        transition is kept, so the worker that held the run cannot move it again.
        """
        self._check_state(state, "state")

        async def change(transitions: Transitions) -> OrchestrationResultView:
            return await transitions.propose_task_state(
                run_id,
                state.to_state(self.clock.now()),
                actor=actor,  # type: ignore[arg-type]
                transition_id=transition_id,
                force=force,
                clear_claim=True,
            )

        return await self._change(change)

    async def cancel_run(self, run_id: UUID) -> tuple[OrchestrationResultView, Effects]:
        """Cancel a task run; see the class docstring for the states it moves to."""
        return await self._change(lambda transitions: self._cancel(transitions, run_id))

    async def release_worker(
        self, worker_id: str, run_ids: list[UUID] | None = None
    ) -> tuple[list[OrchestrationResultView], Effects]:
        """Move the runs a worker holds as for an expired heartbeat, and release its slots."""
        return await self._change(
            lambda transitions: self._release_runs(transitions, worker_id, run_ids)
        )

    async def _change(
        self, change: Callable[[Transitions], Awaitable[T]]
    ) -> tuple[T, Effects]:
        try:
            async with self.database.write_session() as session:
                transitions = Transitions(session, self.settings, self.clock)
                value = await change(transitions)
                await session.commit()
            self.queued_counts.clear()
        except (StorageFault, RequestError):
            raise
        except (SQLAlchemyError, OSError) as error:
            raise _as_fault(error) from error
        return value, transitions.effects

    # -- reads -----------------------------------------------------------------------

    async def workers_holding_runs(self) -> dict[str, list[UUID]]:
        """Return the runs each worker holds in Pending, Running or Cancelling."""
        return await self._read(runs_by_worker)

    async def scheduled_background_jobs(
        self, *, after: UUID | None = None, limit: int | None = None
    ) -> list[JobSpec]:
        """Return the queue job of committed Scheduled background runs, by run id.

        With `after` and `limit`, return one page: at most `limit` runs after run `after`.
        """

        async def read(session: AsyncSession) -> list[JobSpec]:
            rows = await scheduled_background_runs(session, after=after, limit=limit)
            return [
                job_for(row, row.state_id, row.state_name or "Scheduled",
                        row.next_scheduled_start_time)
                for row in rows
            ]

        return await self._read(read)

    async def read_run(self, run_id: UUID) -> TaskRunView:
        """Return a task run with its current state (and the state's data when final)."""
        return await self._read(lambda session: self._read_task_run(session, run_id))

    async def read_states(self, run_id: UUID) -> list[State]:
        """Return a task run's states, oldest first."""

        async def read(session: AsyncSession) -> list[State]:
            if await session.get(TaskRunRow, run_id) is None:
                raise not_found("run_id", "task run", run_id)
            return await task_run_history(session, run_id)

        return await self._read(read)

    async def read_decisions(self, run_id: UUID, limit: int | None = None) -> list[DecisionView]:
        """Return the decisions kept for a run, oldest first, including WAIT and ABORT.

        Every stored decision is returned unless `limit` caps it to the newest ones. A run
        can have more than `decisions_kept` until the pruner removes the expired ones.
        """

        async def read(session: AsyncSession) -> list[DecisionView]:
            rows = await read_decisions(session, run_id, limit)
            if not rows and await session.get(TaskRunRow, run_id) is None:
                if await session.get(FlowRunRow, run_id) is None:
                    raise not_found("run_id", "run", run_id)
            return [DecisionView.model_validate(row, from_attributes=True) for row in rows]

        return await self._read(read)

    async def filter_runs(
        self,
        *,
        state_type: StateType | str | None = None,
        state_name: str | None = None,
        task_key: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskRunView]:
        """Return task runs matching every given filter, newest first."""

        async def read(session: AsyncSession) -> list[TaskRunView]:
            rows = await filter_task_runs(
                session,
                state_type=StateType(state_type) if state_type is not None else None,
                state_name=state_name,
                task_key=task_key,
                tag=tag,
                limit=limit,
                offset=offset,
            )
            return [await self._task_run_view(session, row) for row in rows]

        return await self._read(read)

    async def queue_counts(self) -> dict[str, int]:
        """Count the Scheduled background runs of each task key."""
        return await self._read(queue_counts)

    # -- tag concurrency limits ------------------------------------------------------

    async def create_limit(self, tag: str, limit: int) -> ConcurrencyLimit:
        """Create a tag's concurrency limit, or change it; runs holding slots keep them."""
        if limit < 0:
            raise invalid("limit", f"limit {limit} is negative; use 0 or more")

        async def write(session: AsyncSession) -> ConcurrencyLimit:
            await limit_rows.upsert_limit(session, tag, limit, self.clock.now())
            return await limit_rows.read_limit(session, tag)

        return await self._write(write)

    async def read_limit(self, tag: str) -> ConcurrencyLimit:
        """Return a tag's limit with the runs holding its slots."""

        async def read(session: AsyncSession) -> ConcurrencyLimit:
            found = await limit_rows.read_limit(session, tag)
            if found is None:
                raise not_found("tag", "concurrency limit of tag", tag)
            return found

        return await self._read(read)

    async def list_limits(self) -> list[ConcurrencyLimit]:
        """Return every tag limit, in tag order."""
        return await self._read(limit_rows.list_limits)

    async def delete_limit(self, tag: str) -> None:
        """Delete a tag's limit and release its slots."""

        async def write(session: AsyncSession) -> None:
            if not await limit_rows.delete_limit(session, tag):
                raise not_found("tag", "concurrency limit of tag", tag)

        await self._write(write)

    async def reset_limit(self, tag: str) -> ConcurrencyLimit:
        """Release every slot of a tag's limit and return the emptied limit."""

        async def write(session: AsyncSession) -> ConcurrencyLimit:
            if not await limit_rows.reset_limit(session, tag):
                raise not_found("tag", "concurrency limit of tag", tag)
            return await limit_rows.read_limit(session, tag)

        return await self._write(write)

    async def prune_decisions(self) -> int:
        """Forget decisions past the last `decisions_kept` per run once their transition
        ids are older than `transition_retention`; return how many were deleted."""
        forget_before = self.clock.now() - timedelta(seconds=self.settings.transition_retention)
        return await self._write(
            lambda session: prune_decisions(
                session, keep=self.settings.decisions_kept, forget_before=forget_before
            )
        )

    # -- helpers ---------------------------------------------------------------------

    async def _read(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        try:
            async with self.database.read_session() as session:
                return await read(session)
        except (StorageFault, RequestError):
            raise
        except (SQLAlchemyError, OSError) as error:
            raise _as_fault(error) from error

    async def _write(self, write: Callable[[AsyncSession], Awaitable[T]]) -> T:
        try:
            async with self.database.write_session() as session:
                value = await write(session)
                await session.commit()
                return value
        except (StorageFault, RequestError):
            raise
        except (SQLAlchemyError, OSError) as error:
            raise _as_fault(error) from error

    async def _read_task_run(self, session: AsyncSession, run_id: UUID) -> TaskRunView:
        row = await session.get(TaskRunRow, run_id)
        if row is None:
            raise not_found("args.run_id", "task run", run_id)
        return await self._task_run_view(session, row)

    async def _task_run_view(self, session: AsyncSession, row: TaskRunRow) -> TaskRunView:
        return task_run_view(row, await read_task_run_state(session, row.state_id))

    async def _flow_run_view(self, session: AsyncSession, row: FlowRunRow) -> FlowRunView:
        state = await read_flow_run_state(session, row.state_id)
        return FlowRunView(
            id=row.id,
            name=row.name,
            flow_name=row.flow_name,
            tags=list(row.tags or []),
            deployment_id=row.deployment_id,
            parent_task_run_id=row.parent_task_run_id,
            run_count=row.run_count,
            state=state,
            start_time=row.start_time,
            end_time=row.end_time,
            created=row.created,
        )


FINAL_TYPES = frozenset(state_type.value for state_type in TERMINAL_STATES)
HELD_TYPES = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value)


def parse_args(model: type[ArgsModel], args: dict[str, Any]) -> ArgsModel:
    """Validate request arguments, naming the first invalid value in the error."""
    try:
        return model.model_validate(args)
    except ValidationError as error:
        problem = error.errors()[0]
        field_name = ".".join(["args", *(str(part) for part in problem["loc"])])
        given = problem.get("input")
        raise invalid(
            field_name, f"{field_name} is invalid: {problem['msg']} (got {_describe(given)})"
        ) from None


def retry_delay_seconds(empirical_policy: dict[str, Any], attempt: int) -> float:
    """Return the jittered delay before retrying after failed attempt number `attempt`."""
    from policy.retries import base_retry_delay, jittered_delay  # noqa: PLC0415

    base = base_retry_delay(empirical_policy.get("retry_delay"), attempt)
    return jittered_delay(base, empirical_policy.get("retry_jitter_factor"))


def create_digest(run: BaseModel) -> str:
    """Return the SHA-256 of a create request's contents, to tell a resend from a conflict."""
    return hashlib.sha256(_canonical_json(run.model_dump(mode="json")).encode()).hexdigest()


def new_task_run_values(run: TaskRunCreate, digest: str, now: datetime) -> dict[str, Any]:
    """Return the column values of a new background task run with no state yet."""
    return {
        "id": run.id,
        "name": run.name or run.task_key,
        "tags": list(run.tags),
        "run_count": 0,
        "total_run_time": 0.0,
        "created": now,
        "updated": now,
        "task_key": run.task_key,
        "dynamic_key": f"{run.task_key}-{run.id.hex}",
        "flow_run_id": run.flow_run_id,
        "is_background": True,
        "empirical_policy": run.empirical_policy.model_dump(mode="json"),
        "flow_run_run_count": 0,
        "parameters": run.parameters.model_dump(mode="json"),
        "submitted_cache_key": run.cache_key,
        "submitted_cache_expiration": run.cache_expiration,
        "refresh_cache": run.refresh_cache,
        "persist_result": run.persist_result,
        "timeout_seconds": run.timeout_seconds,
        "create_digest": digest,
    }


def new_flow_run_values(run: FlowRunCreate, digest: str, now: datetime) -> dict[str, Any]:
    """Return the column values of a new flow run with no state yet."""
    return {
        "id": run.id,
        "name": run.name or run.flow_name,
        "tags": list(run.tags),
        "run_count": 0,
        "total_run_time": 0.0,
        "created": now,
        "updated": now,
        "flow_name": run.flow_name,
        "deployment_id": run.deployment_id,
        "parent_task_run_id": run.parent_task_run_id,
        "empirical_policy": {"retries": run.retries, "retry_delay": run.retry_delay},
        "create_digest": digest,
    }


def _log_rejected(request: Request, error: RequestError) -> None:
    logger.info(
        "request %s (op %s, run %s) rejected with %s on %s: %s",
        request.request_id, request.op, _run_id_of(request), error.code, error.field,
        error.message,
    )


def _log_failed(request: Request, error: BaseException) -> None:
    logger.error(
        "request %s (op %s, run %s) failed and was rolled back: %s: %s",
        request.request_id, request.op, _run_id_of(request), type(error).__name__, error,
        exc_info=error,
    )


def _batch_ids(requests: list[Request]) -> tuple[list[UUID], list[UUID]]:
    """Return the task run ids and transition ids a batch names, for one look-up each.

    Values that are not UUIDs are skipped here; the request's own parsing rejects them.
    """
    run_ids: list[UUID] = []
    transition_ids: list[UUID] = []
    for request in requests:
        if request.op not in DEFERRABLE_OPS or not isinstance(request.args, dict):
            continue
        if request.op != "create_task_run" and request.args.get("kind", "task_run") == "task_run":
            run_id = _run_id_of(request)
            if run_id is not None:
                run_ids.append(run_id)
        for name in TRANSITION_ID_FIELDS:
            transition_id = _uuid_or_none(request.args.get(name))
            if transition_id is not None:
                transition_ids.append(transition_id)
    return run_ids, transition_ids


def _uuid_or_none(value: Any) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _lock_order(request: Request) -> tuple[int, str]:
    """Sort key that applies requests in run-id order, so batches lock rows in one order."""
    run_id = _run_id_of(request)
    return (0, str(run_id)) if run_id is not None else (1, "")


def _run_id_of(request: Request) -> UUID | None:
    args = request.args if isinstance(request.args, dict) else {}
    candidate = args.get("run_id")
    if candidate is None and isinstance(args.get("run"), dict):
        candidate = args["run"].get("id")
    return _uuid_or_none(candidate)


def _as_fault(error: BaseException) -> BaseException:
    fault = storage_fault_from(error)
    if fault is error:
        return error
    logger.warning("storage fault; the transaction was rolled back: %s", error)
    return fault


def _internal_error(request: Request) -> Reply:
    return Reply(
        request_id=request.request_id,
        ok=False,
        error=ErrorInfo(
            code="internal",
            message=f"request {request.request_id} failed inside the service and was "
            "rolled back; the service log names the error",
        ),
    )


def _jsonable(
    value: Any, stored_answers: dict[int, tuple[BaseModel, dict[str, Any]]] | None = None
) -> Any:
    """Convert a result to JSON types, reusing the JSON form of any stored decision."""
    if isinstance(value, BaseModel):
        stored = stored_answers.get(id(value)) if stored_answers else None
        if stored is not None and stored[0] is value:
            return stored[1]
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: _jsonable(item, stored_answers) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item, stored_answers) for item in value]
    if isinstance(value, UUID):
        return str(value)
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
