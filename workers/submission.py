"""Submit background runs: bind and encode each call, send the create requests, check replies.

Everything that can fail on the caller's side (a wrong argument, a value the serializer
cannot encode, parameters over the size limit, a cache key over the length limit) fails
here, before any request is sent. The run id and transition id are minted here too, so
a resent create request is the same request to the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from queue_server.protocol import OrchestrationResultView, TaskRunCreate
from queue_server.transport_client import QueueFullServiceError, ServiceError
from workers.binding import bind_arguments
from workers.client import TaskgateClient
from workers.errors import ArgumentsTooLarge, SubmissionRejected
from workers.errors import QueueFullError as QueueFull
from workers.futures import TaskFuture
from workers.serialization import encode_parameters, encode_value, envelope_size

if TYPE_CHECKING:
    from workers.task import Task


@dataclass(frozen=True)
class Call:
    """One call of a task, bound to its signature and ready to send."""

    parameters: dict[str, Any]
    scheduled_time: datetime | None
    extra_tags: tuple[str, ...]

    @classmethod
    def build(
        cls,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        countdown: float | None,
        eta: datetime | None,
        tags: Iterable[str] | None,
    ) -> Call:
        """Bind the arguments and work out the due time; raise ArgumentError naming a bad one."""
        if countdown is not None and eta is not None:
            raise ValueError("pass countdown or eta, not both")
        if isinstance(tags, str):
            raise ValueError(f"tags={tags!r} is one string; pass a list of tags")
        scheduled_time = None
        if countdown is not None:
            if countdown < 0:
                raise ValueError(f"countdown={countdown} must be >= 0 seconds")
            scheduled_time = datetime.now(UTC) + timedelta(seconds=countdown)
        elif eta is not None:
            if eta.tzinfo is None:
                raise ValueError(f"eta={eta.isoformat()} has no timezone; pass an aware datetime")
            scheduled_time = eta.astimezone(UTC)
        parameters = bind_arguments(task.fn, args, kwargs)
        return cls(parameters, scheduled_time, tuple(tags or ()))


def build_run(task: Task[Any, Any], call: Call, client: TaskgateClient) -> TaskRunCreate:
    """Encode one call as the create request's run; raise before anything is sent."""
    options = task.options
    settings = client.settings
    parameters = encode_parameters(call.parameters, options.serializer)
    size = envelope_size(parameters)
    if size > settings.max_argument_bytes:
        largest = _largest(call, options.serializer)
        raise ArgumentsTooLarge(size, settings.max_argument_bytes, largest)

    cache_key = options.cache_key_fn(call.parameters) if options.cache_key_fn else None
    if cache_key is not None and len(cache_key) > settings.max_cache_key_length:
        raise ValueError(
            f"cache key of {len(cache_key)} characters is longer than the limit of "
            f"{settings.max_cache_key_length} (TASKGATE_MAX_CACHE_KEY_LENGTH); hash it first"
        )
    cache_expiration = None
    if cache_key is not None and options.cache_expiration is not None:
        # NOTE: the expiration counts from the run's due time, not from its completion,
        # because it is frozen onto the run when the run is created.
        cache_expiration = (call.scheduled_time or datetime.now(UTC)) + options.cache_expiration

    return TaskRunCreate(
        id=uuid.uuid4(),
        task_key=options.task_key,
        name=options.name,
        tags=sorted(set(options.tags) | set(call.extra_tags)),
        parameters=parameters,
        empirical_policy=options.run_policy(),
        cache_key=cache_key,
        cache_expiration=cache_expiration,
        refresh_cache=options.refresh_cache,
        persist_result=options.persist_result,
        timeout_seconds=options.timeout_seconds,
        scheduled_time=call.scheduled_time,
        serializer=options.serializer,
    )


def submit_calls(
    task: Task[Any, Any], calls: list[Call], client: TaskgateClient
) -> list[TaskFuture]:
    """Create one run per call in one pipelined round trip; return their futures in order.

    Raise the first failure: QueueFullError, or SubmissionRejected for an error reply or a
    first state the service did not accept. Runs created before the failure stay created.
    """
    runs = [build_run(task, call, client) for call in calls]
    many_args = [
        {"run": run.model_dump(mode="json"), "transition_id": str(uuid.uuid4())} for run in runs
    ]
    results = client.request_many("create_task_run", many_args)

    futures: list[TaskFuture] = []
    for run, result in zip(runs, results, strict=True):
        _check_created(task, run, result)
        futures.append(
            TaskFuture(
                run.id,
                task_key=task.task_key,
                allow_pickle=task.options.serializer == "pickle",
                client=client,
            )
        )
    return futures


def _check_created(task: Task[Any, Any], run: TaskRunCreate, result: Any) -> None:
    if isinstance(result, QueueFullServiceError):
        raise QueueFull(f"cannot submit {task.task_key}: {result.message}", task.task_key)
    if isinstance(result, ServiceError):
        raise SubmissionRejected(
            f"the service rejected run {run.id} of {task.task_key}: {result.message}",
            code=result.code,
            field=result.field,
        )
    orchestration = OrchestrationResultView.model_validate(result["orchestration"])
    if orchestration.status != "ACCEPT":
        raise SubmissionRejected(
            f"the service returned {orchestration.status} for run {run.id} of {task.task_key}: "
            f"{orchestration.reason or 'no reason given'}",
            code=orchestration.status.lower(),
        )


def _largest(call: Call, serializer: str) -> str | None:
    sizes = {
        name: envelope_size(encode_value(value, serializer, what=name))  # type: ignore[arg-type]
        for name, value in call.parameters.items()
    }
    return max(sizes, key=sizes.__getitem__) if sizes else None
