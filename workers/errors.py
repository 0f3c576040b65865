"""Errors that taskgate raises in user code: at submission, while waiting, and for failed runs."""

from __future__ import annotations

from uuid import UUID


class TaskgateError(Exception):
    """Base class of every error taskgate raises in user code."""


class TaskDefinitionError(TaskgateError, ValueError):
    """An `@task` option is invalid; raised when the function is decorated."""


class ArgumentError(TaskgateError, TypeError):
    """A call's arguments do not fit the task's signature; the message names the argument."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class SerializationError(TaskgateError, ValueError):
    """A value cannot be encoded or decoded by the task's serializer."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class SubmissionError(TaskgateError):
    """`.delay()` could not create the run; nothing was queued."""


class SubmissionRejected(SubmissionError):
    """The service rejected the create request or did not accept the run's first state."""

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class QueueFullError(SubmissionError):
    """The task key's queue already contains as many runs as the service allows."""

    def __init__(self, message: str, task_key: str) -> None:
        super().__init__(message)
        self.task_key = task_key


class TaskTimeout(TaskgateError, TimeoutError):
    """A future's wait ended before its run reached a final state."""

    def __init__(self, run_id: UUID, timeout: float) -> None:
        super().__init__(f"task run {run_id} did not finish within {timeout} s")
        self.run_id = run_id
        self.timeout = timeout


class TaskRunCancelled(TaskgateError):
    """The run ended Cancelled, so it has no result."""


class TaskRunCrashed(TaskgateError):
    """The run ended Crashed: its worker died while running it and no retry was left."""


class RemoteTaskError(TaskgateError):
    """A run failed with an exception whose type cannot be imported or rebuilt here."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


class ResultNotAvailable(TaskgateError):
    """The run completed but its result is gone: it was not persisted and the cache expired."""


class ArgumentsTooLarge(TaskgateError, ValueError):
    """The serialized parameters exceed TASKGATE_MAX_ARGUMENT_BYTES."""

    def __init__(self, size: int, limit: int, largest: str | None) -> None:
        hint = f"; the largest is argument {largest!r}" if largest else ""
        super().__init__(
            f"the serialized arguments take {size} bytes, more than the limit of {limit} "
            f"bytes (TASKGATE_MAX_ARGUMENT_BYTES){hint}: pass a reference, such as a file "
            "path or a database key, instead of the data"
        )
        self.size = size
        self.limit = limit
        self.argument = largest
