"""Telling a storage fault apart from a bad request or a bug.

A storage fault is anything after which the transaction cannot be trusted and a resend
may succeed: a lost or closed connection, a deadlock, a serialization failure, a lock
timeout, a locked SQLite database, an exhausted pool. The service rolls the batch back
and raises `StorageFault` for those. Integrity and data errors are not faults: they
come from what was written and would fail again on a resend.
"""

from __future__ import annotations

from sqlalchemy import exc

# PostgreSQL SQLSTATE codes (and classes) that mean "try the transaction again".
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})
RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "58")


def is_storage_fault(error: BaseException) -> bool:
    """Tell whether `error` is a failure of the database rather than of the request."""
    if isinstance(error, exc.TimeoutError | exc.ResourceClosedError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        sqlstate = _sqlstate(error)
        if sqlstate is not None:
            return sqlstate in RETRYABLE_SQLSTATES or sqlstate.startswith(
                RETRYABLE_SQLSTATE_CLASSES
            )
        return False
    # A few drivers raise their own connection errors past SQLAlchemy's wrapping.
    return isinstance(error, ConnectionError | OSError)


def _sqlstate(error: exc.DBAPIError) -> str | None:
    original = error.orig
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(original, attribute, None)
        if isinstance(value, str):
            return value
    cause = getattr(original, "__cause__", None)
    value = getattr(cause, "sqlstate", None)
    return value if isinstance(value, str) else None


def storage_fault_from(error: BaseException) -> BaseException:
    """Return a `StorageFault` chained to `error` when it is one, else `error` itself."""
    from queue_server.errors import StorageFault  # noqa: PLC0415 - errors imports protocol

    if isinstance(error, StorageFault) or not is_storage_fault(error):
        return error
    fault = StorageFault(f"database failed: {type(error).__name__}: {error}")
    fault.__cause__ = error
    return fault
