"""Turn a final run into its value, or into the exception it failed with.

A Completed state's data is ``{"type": "result", "serializer", "value"}``, or
``{"type": "unpersisted"}`` when the task does not persist results (its value then lives
only in the Redis result cache). A Failed or Crashed state's data is ``{"type": "error",
"exc_type": "module.Class", "message", "traceback"}``.
"""

from __future__ import annotations

import builtins
import importlib
import traceback
from typing import Any

from policy.states import State, StateType
from queue_server.protocol import Envelope
from workers.errors import (
    RemoteTaskError,
    ResultNotAvailable,
    TaskRunCancelled,
    TaskRunCrashed,
)
from workers.serialization import decode_value, encode_value

UNPERSISTED = {"type": "unpersisted"}


def result_data(value: Any, serializer: str) -> dict[str, Any]:
    """Build a Completed state's data for a value (raises SerializationError)."""
    envelope = encode_value(value, serializer, what="the task's return value")  # type: ignore[arg-type]
    return {"type": "result", **envelope.model_dump(mode="json")}


def error_data(error: BaseException) -> dict[str, Any]:
    """Build a Failed state's data for an exception, keeping its traceback as text."""
    exc_type = type(error)
    return {
        "type": "error",
        "exc_type": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


def is_unpersisted(state: State) -> bool:
    return isinstance(state.data, dict) and state.data.get("type") == "unpersisted"


def value_of(state: State, *, allow_pickle: bool) -> Any:
    """Return the run's value for a final state, or raise what the run ended with."""
    if state.type is StateType.COMPLETED:
        data = state.data
        if not isinstance(data, dict) or data.get("type") != "result":
            raise ResultNotAvailable(
                f"the run completed but its state {state.name} carries no result; the task "
                "has persist_result=False and the cached value is gone or not written yet"
            )
        envelope = Envelope(serializer=data.get("serializer", "json"), value=data.get("value"))
        return decode_value(envelope, allow_pickle=allow_pickle)
    if state.type is StateType.CANCELLED:
        raise TaskRunCancelled(state.message or "the task run was cancelled")
    if state.type is StateType.CRASHED and not _is_error(state.data):
        raise TaskRunCrashed(state.message or "the task run crashed")
    raise rebuild_exception(state)


def rebuild_exception(state: State) -> BaseException:
    """Rebuild the exception of a Failed or Crashed state, with the remote traceback attached.

    The exception gets the original type when that type can be imported here and built
    from its message. Otherwise it is a RemoteTaskError naming the type. The traceback
    text is kept as `remote_traceback` and added as a note, so it prints with the error.
    """
    data = state.data if _is_error(state.data) else {}
    exc_type = data.get("exc_type") or "builtins.Exception"
    message = data.get("message") or state.message or f"the task run ended {state.name}"
    remote_traceback = data.get("traceback") or ""

    error = _build(exc_type, message)
    if state.type is StateType.CRASHED and not isinstance(error, TaskRunCrashed):
        error = TaskRunCrashed(f"{exc_type}: {message}")
    error.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    if remote_traceback:
        error.add_note(f"Traceback of the task run, as the worker saw it:\n{remote_traceback}")
    return error


def _is_error(data: Any) -> bool:
    return isinstance(data, dict) and data.get("type") == "error"


def _build(exc_type: str, message: str) -> BaseException:
    cls = _import_exception_type(exc_type)
    if cls is None:
        return RemoteTaskError(exc_type, message)
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments
        error = cls.__new__(cls)
        error.args = (message,)
        return error


def _import_exception_type(path: str) -> type[BaseException] | None:
    module_name, _, qualname = path.rpartition(".")
    if module_name in ("", "builtins"):
        found = getattr(builtins, qualname, None)
    else:
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError:
            return None
        for part in qualname.split("."):
            found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None
