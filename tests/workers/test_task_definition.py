"""`@task` options, argument binding, serialization and failure rebuilding, with no server."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from policy.states import Completed, Crashed, Failed
from workers import ArgumentError, SerializationError, Task, task
from workers.binding import bind_arguments, call_arguments
from workers.errors import RemoteTaskError, TaskDefinitionError, TaskRunCrashed
from workers.registry import DuplicateTaskKey, TaskRegistry
from workers.results import error_data, rebuild_exception, result_data, value_of
from workers.serialization import decode_value, encode_parameters, encode_value

pytestmark = pytest.mark.unit


def make(registry: TaskRegistry | None = None, **options):
    def decorate(function):
        return task(registry=registry or TaskRegistry(), **options)(function)

    return decorate


def test_bare_decorator_uses_module_qualified_key() -> None:
    @task(registry=TaskRegistry())
    def local(x: int) -> int:
        return x

    assert isinstance(local, Task)
    qualname = "test_bare_decorator_uses_module_qualified_key.<locals>.local"
    assert local.task_key == f"{__name__}.{qualname}"
    assert local.name == "local"
    assert local(3) == 3


def test_options_are_frozen_into_run_policy() -> None:
    @make(retries=2, retry_delay_seconds=[1, 2], retry_jitter_factor=0.5, cache_isolation=True)
    def job() -> None: ...

    policy = job.options.run_policy()
    assert policy.retries == 2
    assert policy.retry_delay == [1.0, 2.0]
    assert policy.retry_jitter_factor == 0.5
    assert policy.cache_isolation is True


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": -1}, "retries"),
        ({"retry_delay_seconds": -1}, "retry_delay_seconds"),
        ({"retry_delay_seconds": [1] * 51}, "retry_delay_seconds"),
        ({"retry_jitter_factor": -0.1}, "retry_jitter_factor"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"serializer": "yaml"}, "serializer"),
        ({"cache_expiration": 0}, "cache_expiration"),
        ({"tags": "one"}, "tags"),
        ({"retry_condition_fn": 3}, "retry_condition_fn"),
    ],
)
def test_invalid_option_is_named(options: dict, named: str) -> None:
    with pytest.raises(TaskDefinitionError, match=named):
        make(**options)(lambda: None)


def test_cache_expiration_accepts_seconds() -> None:
    @make(cache_expiration=90)
    def job() -> None: ...

    assert job.options.cache_expiration == timedelta(seconds=90)


def test_duplicate_task_key_is_rejected() -> None:
    registry = TaskRegistry()

    def first() -> None: ...

    def second() -> None: ...

    make(registry, task_key="same")(first)
    with pytest.raises(DuplicateTaskKey, match="same"):
        make(registry, task_key="same")(second)


def test_bind_applies_defaults_and_spreads_varargs() -> None:
    def function(a, b=2, *rest, c, **extra):
        return a, b, rest, c, extra

    parameters = bind_arguments(function, (1, 5, 6, 7), {"c": 3, "d": 4})
    assert parameters == {"a": 1, "b": 5, "rest": [6, 7], "c": 3, "extra": {"d": 4}}
    args, kwargs = call_arguments(function, parameters)
    assert function(*args, **kwargs) == (1, 5, (6, 7), 3, {"d": 4})


def test_bind_names_missing_argument() -> None:
    def function(alpha, beta): ...

    with pytest.raises(ArgumentError) as raised:
        bind_arguments(function, (1,), {})
    assert raised.value.argument == "beta"


def test_bind_names_unexpected_argument() -> None:
    def function(alpha): ...

    with pytest.raises(ArgumentError) as raised:
        bind_arguments(function, (1,), {"gamma": 2})
    assert raised.value.argument == "gamma"


def test_call_arguments_names_unknown_stored_parameter() -> None:
    def function(alpha): ...

    with pytest.raises(ArgumentError, match="'zeta'"):
        call_arguments(function, {"alpha": 1, "zeta": 2})


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (object(), "argument 'value'"),
        ({"inner": [1, {2, 3}]}, "argument 'value'['inner'][1]"),
        ((1, 2), "argument 'value'"),
        ({1: "x"}, "argument 'value'"),
        (math.nan, "argument 'value'"),
    ],
)
def test_json_rejects_value_naming_its_path(value: object, path: str) -> None:
    with pytest.raises(SerializationError) as raised:
        encode_parameters({"value": value}, "json")
    assert path in str(raised.value)
    assert raised.value.argument == "argument 'value'"


def test_json_round_trips_unicode_and_nesting() -> None:
    value = {"ключ": ["値", {"deep": [None, True, 1.5]}]}
    assert decode_value(encode_value(value, "json"), allow_pickle=False) == value


def test_pickle_needs_permission_to_decode() -> None:
    envelope = encode_value({1, 2}, "pickle")
    with pytest.raises(SerializationError, match="allow_pickle"):
        decode_value(envelope, allow_pickle=False)
    assert decode_value(envelope, allow_pickle=True) == {1, 2}


def test_pickle_rejects_unpicklable_argument() -> None:
    with pytest.raises(SerializationError, match="argument 'handle'"):
        encode_parameters({"handle": lambda: None}, "pickle")


def test_completed_state_yields_value() -> None:
    state = Completed(data=result_data([1, "two"], "json"))
    assert value_of(state, allow_pickle=False) == [1, "two"]


def test_failure_rebuilds_type_message_and_traceback() -> None:
    try:
        raise LookupError("gone")
    except LookupError as error:
        data = error_data(error)
    rebuilt = rebuild_exception(Failed(data=data))
    assert type(rebuilt) is LookupError
    assert str(rebuilt) == "gone"
    assert "raise LookupError" in rebuilt.remote_traceback


def test_unknown_exception_type_becomes_remote_error() -> None:
    data = {"type": "error", "exc_type": "nowhere.Missing", "message": "m", "traceback": ""}
    rebuilt = rebuild_exception(Failed(data=data))
    assert isinstance(rebuilt, RemoteTaskError)
    assert rebuilt.exc_type == "nowhere.Missing"


def test_crashed_state_raises_crashed() -> None:
    with pytest.raises(TaskRunCrashed):
        value_of(Crashed(message="worker died"), allow_pickle=False)
