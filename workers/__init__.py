"""The public API for user code: `@task`, futures, and the errors taskgate raises."""

from workers.errors import (
    ArgumentError,
    ArgumentsTooLarge,
    QueueFullError,
    RemoteTaskError,
    ResultNotAvailable,
    SerializationError,
    SubmissionError,
    SubmissionRejected,
    TaskgateError,
    TaskRunCancelled,
    TaskRunCrashed,
    TaskTimeout,
)
from workers.futures import DoneAndPending, TaskFuture, as_completed, await_all, wait_all
from workers.task import Task, task

__all__ = [
    "ArgumentError",
    "ArgumentsTooLarge",
    "DoneAndPending",
    "QueueFullError",
    "RemoteTaskError",
    "ResultNotAvailable",
    "SerializationError",
    "SubmissionError",
    "SubmissionRejected",
    "Task",
    "TaskFuture",
    "TaskRunCancelled",
    "TaskRunCrashed",
    "TaskTimeout",
    "TaskgateError",
    "as_completed",
    "await_all",
    "task",
    "wait_all",
]
