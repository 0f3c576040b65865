"""The options of one `@task`, checked once when the function is decorated."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from policy.runs import MAX_RETRY_DELAYS, TaskRunPolicy
from workers.errors import TaskDefinitionError
from workers.serialization import SERIALIZERS, SerializerName

RetryCondition = Callable[[BaseException], bool]
CacheKeyFn = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class TaskOptions:
    """Every `@task` option; docs/tasks.md gives each one's default, unit and enforcing rule."""

    name: str
    task_key: str
    tags: tuple[str, ...] = ()
    retries: int = 0
    retry_delay_seconds: float | tuple[float, ...] = 0.0
    retry_jitter_factor: float | None = None
    retry_condition_fn: RetryCondition | None = None
    cache_key_fn: CacheKeyFn | None = None
    cache_expiration: timedelta | None = None
    refresh_cache: bool = False
    cache_isolation: bool = False
    persist_result: bool = True
    timeout_seconds: float | None = None
    serializer: SerializerName = "json"
    extra: dict[str, Any] = field(default_factory=dict)

    def run_policy(self) -> TaskRunPolicy:
        """Return the retry and cache settings that are frozen onto each new run."""
        delay = self.retry_delay_seconds
        return TaskRunPolicy(
            retries=self.retries,
            retry_delay=list(delay) if isinstance(delay, tuple) else delay,
            retry_jitter_factor=self.retry_jitter_factor,
            cache_isolation=self.cache_isolation,
        )


def build_options(
    *,
    name: str,
    task_key: str,
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
) -> TaskOptions:
    """Check every option and return them frozen; raise TaskDefinitionError naming a bad one."""
    if not task_key or len(task_key) > 500:
        raise TaskDefinitionError(f"task_key {task_key!r} must have 1 to 500 characters")
    if isinstance(tags, str):
        raise TaskDefinitionError(f"tags={tags!r} is one string; pass a list of tags")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise TaskDefinitionError(f"retries={retries!r} must be an int >= 0")
    if retry_jitter_factor is not None and retry_jitter_factor < 0:
        raise TaskDefinitionError(f"retry_jitter_factor={retry_jitter_factor} must be >= 0")
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise TaskDefinitionError(f"timeout_seconds={timeout_seconds} must be > 0")
    if serializer not in SERIALIZERS:
        raise TaskDefinitionError(f"serializer={serializer!r} must be one of {SERIALIZERS}")
    callables = (("retry_condition_fn", retry_condition_fn), ("cache_key_fn", cache_key_fn))
    for option, value in callables:
        if value is not None and not callable(value):
            raise TaskDefinitionError(f"{option}={value!r} is not callable")

    return TaskOptions(
        name=name,
        task_key=task_key,
        tags=tuple(tags or ()),
        retries=retries,
        retry_delay_seconds=_check_delays(retry_delay_seconds),
        retry_jitter_factor=retry_jitter_factor,
        retry_condition_fn=retry_condition_fn,
        cache_key_fn=cache_key_fn,
        cache_expiration=_check_expiration(cache_expiration),
        refresh_cache=refresh_cache,
        cache_isolation=cache_isolation,
        persist_result=persist_result,
        timeout_seconds=timeout_seconds,
        serializer=serializer,  # type: ignore[arg-type]
    )


def _check_delays(value: float | Iterable[float]) -> float | tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise TaskDefinitionError(f"retry_delay_seconds={value} must be >= 0")
        return float(value)
    delays = tuple(float(item) for item in value)
    if len(delays) > MAX_RETRY_DELAYS:
        raise TaskDefinitionError(
            f"retry_delay_seconds has {len(delays)} entries; at most {MAX_RETRY_DELAYS} are allowed"
        )
    if any(delay < 0 for delay in delays):
        raise TaskDefinitionError(f"retry_delay_seconds={list(delays)} has a negative entry")
    return delays


def _check_expiration(value: float | timedelta | None) -> timedelta | None:
    if value is None:
        return None
    expiration = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if expiration.total_seconds() <= 0:
        raise TaskDefinitionError(f"cache_expiration={value!r} must be a positive duration")
    return expiration
