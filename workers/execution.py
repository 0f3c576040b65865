"""Run one job: claim the run, follow the orchestration result, execute, report the end.

The executor has no code for retries, caching or concurrency limits, because those are
rules of the service's policy. It proposes states and acts on each orchestration result:

- ABORT of the claim: another worker has the run, or it moved on; drop the job.
- REJECT of Running to a Cached Completed state: the cached result is the run's result.
- WAIT: hand the run back as Scheduled named AwaitingConcurrencySlot, due after the delay.
- ABORT of Running after an accepted claim: propose Failed with the reason, not retriable.
- ACCEPT: execute, then propose Completed with the result or Failed with the error.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from arq.worker import Retry, RetryJob
from pydantic import ValidationError

from queue_server.jobs import JobSpec
from queue_server.keys import Keys, parse_job_id
from queue_server.protocol import OrchestrationResultView, StateCreate
from queue_server.transport_client import ServiceClient
from workers import proposals
from workers.binding import call_arguments
from workers.errors import TaskgateError
from workers.registry import TaskRegistry
from workers.results import UNPERSISTED, error_data, result_data
from workers.serialization import decode_value
from workers.task import Task

logger = logging.getLogger("workers.runs")


class HeldRuns:
    """The runs this worker has claimed and not yet finished, read by the heartbeat thread."""

    def __init__(self) -> None:
        self._runs: dict[UUID, str] = {}

    def add(self, run_id: UUID, job_id: str) -> None:
        self._runs[run_id] = job_id

    def discard(self, run_id: UUID) -> None:
        self._runs.pop(run_id, None)

    def snapshot(self) -> list[UUID]:
        return list(self._runs.copy())

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs


class RunExecutor:
    """The arq job function ``taskgate.run`` and what it needs to claim, run and report."""

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        service: ServiceClient,
        keys: Keys,
        worker_id: str,
        thread_pool: ThreadPoolExecutor,
        result_cache_ttl: int,
    ) -> None:
        self.registry = registry
        self.service = service
        self.keys = keys
        self.worker_id = worker_id
        self.thread_pool = thread_pool
        self.result_cache_ttl = result_cache_ttl
        self.held = HeldRuns()
        self.stopping = False
        self._executions: dict[UUID, asyncio.Task[Any]] = {}
        self._cancel_requested: set[UUID] = set()

    async def run_job(self, ctx: dict[str, Any], **kwargs: Any) -> None:
        """Handle one arq job of a background run (registered as ``taskgate.run``)."""
        if self.stopping:
            # Leave the job in its queue for another worker: nothing was claimed yet.
            raise RetryJob()
        job = self._parse_job(ctx, kwargs)
        if job is None:
            await self._fail_unreadable(ctx, kwargs)
            return
        self.held.add(job.run_id, ctx["job_id"])
        try:
            await self._claim_and_run(ctx, job)
        finally:
            self.held.discard(job.run_id)
            self._cancel_requested.discard(job.run_id)

    def request_cancel(self, run_id: UUID) -> None:
        """Interrupt the run's execution because the run moved to Cancelling."""
        execution = self._executions.get(run_id)
        if execution is None or execution.done():
            return
        # NOTE: cancelling stops an async function at its next await. A sync function runs
        # on in its thread until it returns, and only the worker's wait for it ends.
        logger.info("run %s: cancelling on request", run_id)
        self._cancel_requested.add(run_id)
        execution.cancel()

    async def _claim_and_run(self, ctx: dict[str, Any], job: JobSpec) -> None:
        answer = await self.service.request(
            "claim_and_start",
            {
                "run_id": str(job.run_id),
                "claimed_state_id": str(job.state_id),
                "worker_id": self.worker_id,
                "claim_transition_id": str(uuid.uuid4()),
                "start_transition_id": str(uuid.uuid4()),
                "running": proposals.running(job).model_dump(mode="json"),
            },
        )
        claim = OrchestrationResultView.model_validate(answer["claim"])
        start = answer.get("start")
        if claim.status == "WAIT":
            # The job came early by the service's clock: put it back for the remaining time.
            raise Retry(defer=claim.delay_seconds or 1)
        # Whatever the result, this job's Scheduled state is used up, so take it off the queue.
        await self.service.redis.zrem(self.keys.queue(job.task_key), ctx["job_id"])
        if claim.status != "ACCEPT":
            logger.debug(
                "run %s: claim returned %s (%s); job dropped",
                job.run_id,
                claim.status,
                claim.reason,
            )
            return
        token = claim.state.state_details.claim_token if claim.state else None
        if token is None or start is None:
            logger.error(
                "run %s: the accepted claim returned no claim token or Running result; "
                "leaving the run to the reaper",
                job.run_id,
            )
            return
        await self._obey_start(job, token, OrchestrationResultView.model_validate(start))

    async def _obey_start(self, job: JobSpec, token: UUID, start: OrchestrationResultView) -> None:
        attempt = start.run_count
        if start.status == "ACCEPT":
            await self._execute(job, token, attempt)
        elif start.status == "REJECT" and start.state is not None and start.state.is_completed():
            logger.info(
                "run %s of %s: %s, not executed", job.run_id, job.task_key, start.state.name
            )
        elif start.status == "WAIT":
            delay = start.delay_seconds or 0.0
            logger.info(
                "run %s of %s: handed back for %.1f s: %s",
                job.run_id,
                job.task_key,
                delay,
                start.reason,
            )
            await self._propose(job, proposals.awaiting_concurrency_slot(token, delay))
        elif start.status == "ABORT":
            message = f"Running was aborted: {start.reason or 'no reason given'}"
            logger.warning("run %s of %s: %s", job.run_id, job.task_key, message)
            await self._propose(job, proposals.failed(token, message, retriable=False))
        else:
            state_name = start.state.name if start.state else None
            logger.info(
                "run %s of %s: Running returned %s with state %s; not executed",
                job.run_id,
                job.task_key,
                start.status,
                state_name,
            )

    async def _execute(self, job: JobSpec, token: UUID, attempt: int | None) -> None:
        task = self.registry.get(job.task_key)
        if task is None:
            message = f"task key {job.task_key!r} is not served by worker {self.worker_id}"
            await self._propose(job, proposals.failed(token, message, retriable=False))
            logger.error("run %s: %s", job.run_id, message)
            return
        try:
            parameters = decode_value(
                job.parameters, allow_pickle=task.options.serializer == "pickle"
            )
            args, kwargs = call_arguments(task.fn, parameters or {})
        except TaskgateError as error:
            message = f"unreadable parameters: {error}"
            logger.error("run %s of %s failed: %s", job.run_id, job.task_key, message)
            await self._propose(
                job, proposals.failed(token, message, error_data(error), retriable=False)
            )
            return

        logger.info("run %s of %s started, attempt %s", job.run_id, job.task_key, attempt or "?")
        started = time.monotonic()
        execution = asyncio.ensure_future(self._call(task, args, kwargs))
        self._executions[job.run_id] = execution
        try:
            await self._finish(job, token, task, execution, started, attempt)
        finally:
            self._executions.pop(job.run_id, None)

    async def _call(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        call = functools.partial(task.fn, *args, **kwargs)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.thread_pool, context.run, call)

    async def _finish(
        self,
        job: JobSpec,
        token: UUID,
        task: Task[Any, Any],
        execution: asyncio.Future[Any],
        started: float,
        attempt: int | None,
    ) -> None:
        try:
            async with asyncio.timeout(job.timeout_seconds) as deadline:
                value = await execution
        except TimeoutError as error:
            if deadline.expired():
                # NOTE: a sync function keeps its thread until it returns; only the wait ends.
                message = f"the run exceeded its timeout of {job.timeout_seconds} s"
                data = error_data(TimeoutError(message))
                proposal = proposals.timed_out(token, message, data)
                await self._report_failure(job, proposal, started, attempt)
                return
            await self._fail_with(job, token, task, error, started, attempt)
            return
        except asyncio.CancelledError:
            if job.run_id in self._cancel_requested:
                self._log_end(job, "cancelled", started, attempt, "on request")
                await self._propose(job, proposals.cancelled("cancelled while running"))
                return
            raise
        except Exception as error:  # noqa: BLE001 - the task's own failure, reported in full
            await self._fail_with(job, token, task, error, started, attempt)
            return

        try:
            data = result_data(value, task.options.serializer)
        except TaskgateError as error:
            message = f"the return value cannot be serialized: {error}"
            self._log_end(job, "failed", started, attempt, message)
            await self._propose(
                job, proposals.failed(token, message, error_data(error), retriable=False)
            )
            return
        proposed = data if job.persist_result else UNPERSISTED
        answer = await self._propose(job, proposals.completed(job, token, proposed))
        if answer.status == "ABORT":
            outcome = "finished, but its Completed state was aborted"
            self._log_end(job, outcome, started, attempt, answer.reason or "")
        else:
            self._log_end(job, "completed", started, attempt, "")
        if not job.persist_result and answer.status == "ACCEPT" and answer.state is not None:
            await self._cache_unpersisted(job, answer, data)

    async def _fail_with(
        self,
        job: JobSpec,
        token: UUID,
        task: Task[Any, Any],
        error: BaseException,
        started: float,
        attempt: int | None,
    ) -> None:
        # None leaves the retry decision to the service's retry rule; False forbids a retry.
        retriable = None if _retry_allowed(task, error, job) else False
        message = f"{type(error).__name__}: {error}"
        proposal = proposals.failed(token, message, error_data(error), retriable=retriable)
        await self._report_failure(job, proposal, started, attempt)

    async def _report_failure(
        self, job: JobSpec, proposal: StateCreate, started: float, attempt: int | None
    ) -> None:
        answer = await self._propose(job, proposal)
        if answer.status == "REJECT" and answer.state is not None and answer.state.is_scheduled():
            due = answer.state.state_details.scheduled_time
            due_text = due.isoformat() if due else "now"
            detail = f"{proposal.message}; next attempt due {due_text}"
            self._log_end(job, "failed, retry scheduled", started, attempt, detail)
        else:
            self._log_end(job, "failed", started, attempt, proposal.message or "")

    async def _propose(self, job: JobSpec, state: StateCreate) -> OrchestrationResultView:
        answer = OrchestrationResultView.model_validate(
            await self.service.request(
                "propose_state",
                {
                    "run_id": str(job.run_id),
                    "state": state.model_dump(mode="json"),
                    "transition_id": str(uuid.uuid4()),
                    "worker_id": self.worker_id,
                },
            )
        )
        if answer.status == "ABORT":
            logger.warning(
                "run %s: proposing %s was aborted: %s",
                job.run_id,
                state.name or state.type.value.title(),
                answer.reason,
            )
        return answer

    async def _cache_unpersisted(
        self, job: JobSpec, answer: OrchestrationResultView, data: dict[str, Any]
    ) -> None:
        """Keep an unpersisted value in the Redis result cache, the only place it lives."""
        view = await self.service.request("read_run", {"run_id": str(job.run_id)})
        view["state"]["data"] = data
        # The service caches its own final view too, without the value. It writes that
        # view with NX for unpersisted results, so the value stays whichever lands first.
        await self.service.redis.set(
            self.keys.result(job.run_id), _dumps(view), ex=self.result_cache_ttl
        )

    def _log_end(
        self, job: JobSpec, outcome: str, started: float, attempt: int | None, detail: str
    ) -> None:
        duration = time.monotonic() - started if started else 0.0
        level = logging.INFO if outcome in ("completed", "cancelled") else logging.WARNING
        logger.log(
            level,
            "run %s of %s %s after %.3f s, attempt %s%s",
            job.run_id,
            job.task_key,
            outcome,
            duration,
            attempt or "?",
            f": {detail}" if detail else "",
        )

    def _parse_job(self, ctx: dict[str, Any], kwargs: dict[str, Any]) -> JobSpec | None:
        try:
            return JobSpec.model_validate(kwargs)
        except ValidationError as error:
            logger.error("job %s is unreadable: %s", ctx.get("job_id"), error)
            return None

    async def _fail_unreadable(self, ctx: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """Claim the run of a job that cannot be read, and fail it with the reason."""
        try:
            run_id, state_id = parse_job_id(str(ctx.get("job_id")))
            UUID(run_id), UUID(state_id)
        except ValueError:
            logger.error("job %s names no run; it cannot be reported", ctx.get("job_id"))
            return
        answer = await self.service.request(
            "claim_and_start",
            {
                "run_id": run_id,
                "claimed_state_id": state_id,
                "worker_id": self.worker_id,
                "claim_transition_id": str(uuid.uuid4()),
                "start_transition_id": str(uuid.uuid4()),
                "running": None,
            },
        )
        claim = OrchestrationResultView.model_validate(answer["claim"])
        if claim.status != "ACCEPT" or claim.state is None:
            return
        token = claim.state.state_details.claim_token
        message = "the job's parameters are missing or unreadable"
        state = proposals.failed(token, message, retriable=False)  # type: ignore[arg-type]
        await self.service.request(
            "propose_state",
            {
                "run_id": run_id,
                "state": state.model_dump(mode="json"),
                "transition_id": str(uuid.uuid4()),
                "worker_id": self.worker_id,
            },
        )
        logger.error("run %s failed: %s", run_id, message)


def _retry_allowed(task: Task[Any, Any], error: BaseException, job: JobSpec) -> bool:
    """Ask the task's retry condition; a condition that raises counts as no."""
    condition = task.options.retry_condition_fn
    if condition is None:
        return True
    try:
        return bool(condition(error))
    except Exception:  # noqa: BLE001 - user code; its failure must not lose the run's report
        logger.exception("run %s: retry_condition_fn raised; not retrying", job.run_id)
        return False


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
