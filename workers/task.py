"""`@task`: turn a function into a task that runs inline or in the background.

Calling the task runs the function here and now. ``.delay()``, ``.apply_async()`` and
``.map()`` create background runs on the service, which queues them for a worker, and
return TaskFutures.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from workers.client import TaskgateClient, get_client
from workers.futures import TaskFuture
from workers.options import CacheKeyFn, RetryCondition, TaskOptions, build_options
from workers.registry import REGISTRY, TaskRegistry
from workers.submission import Call, submit_calls

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function with its task options; see docs/tasks.md for every option."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @property
    def task_key(self) -> str:
        return self.options.task_key

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def module(self) -> str:
        return _module_name(self.fn)

    def __repr__(self) -> str:
        return f"Task(task_key={self.task_key!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function inline, in this process, with no queue and no service."""
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture:
        """Create a background run due now; return its future once the service accepted it."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        tags: Iterable[str] | None = None,
        client: TaskgateClient | None = None,
    ) -> TaskFuture:
        """Create a background run, due after `countdown` seconds or at `eta` (aware UTC).

        Raise ArgumentError or SerializationError naming a bad argument before anything
        is sent, QueueFullError when the task key's queue is full, and SubmissionRejected
        when the service does not accept the run.
        """
        call = Call.build(self, tuple(args), dict(kwargs or {}), countdown, eta, tags)
        return submit_calls(self, [call], client or get_client())[0]

    def map(
        self, *iterables: Iterable[Any], client: TaskgateClient | None = None, **kwargs: Any
    ) -> list[TaskFuture]:
        """Create one background run per item, sending all the create requests in one pipeline.

        The iterables are zipped into positional arguments, as with the built-in map;
        keyword arguments are passed unchanged to every call. Every call is bound and
        serialized before any request is sent, so a bad item raises and creates no run.
        """
        calls = [
            Call.build(self, tuple(items), dict(kwargs), None, None, None)
            for items in zip(*iterables, strict=True)
        ]
        return submit_calls(self, calls, client or get_client())


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    task_key: str | None = None,
    tags: Iterable[str] | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Iterable[float] = 0.0,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryCondition | None = None,
    cache_key_fn: CacheKeyFn | None = None,
    cache_expiration: float | timedelta | None = None,
    refresh_cache: bool = False,
    cache_isolation: bool = False,
    persist_result: bool = True,
    timeout_seconds: float | None = None,
    serializer: str = "json",
    registry: TaskRegistry | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[..., Any] | None = None, /, *, registry: TaskRegistry | None = None, **options: Any
) -> Any:
    """Declare a task, bare (``@task``) or with options (``@task(retries=3)``).

    The task registers under its task key, by default the function's module-qualified
    name, so a worker that imports the same module serves it.
    """

    def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
        if not callable(function):
            raise TypeError(f"@task decorates a function, not {function!r}")
        built = build_options(
            name=options.pop("name", None) or function.__name__,
            task_key=options.pop("task_key", None) or default_task_key(function),
            **options,
        )
        created: Task[Any, Any] = Task(function, built)
        (registry or REGISTRY).register(created)
        return created

    if fn is not None:
        return decorate(fn)
    return decorate


def default_task_key(function: Callable[..., Any]) -> str:
    """Return ``<module>.<qualname>``, with the real module name even when run as __main__."""
    return f"{_module_name(function)}.{function.__qualname__}"


def _module_name(function: Callable[..., Any]) -> str:
    module = function.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return module
