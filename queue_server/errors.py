"""Errors the transition service raises or turns into error replies.

`StorageFault` is a failure of the database itself (a lost connection, a deadlock, a
serialization failure, a locked SQLite file). The service rolls back the whole batch
and sends no reply, so the senders resend. The service never replies ABORT for it.

`RequestError` is a problem with one request (a malformed argument, an unknown run id,
a full queue). The service answers it with an error reply naming the value and writes
nothing for that request.
"""

from __future__ import annotations

from policy.errors import StorageFault as PolicyStorageFault
from queue_server.protocol import ErrorCode, ErrorInfo


class StorageFault(PolicyStorageFault):
    """The database failed; the batch was rolled back and may be resent as it is."""


class RequestError(Exception):
    """A request that the service rejects with an error reply and no write."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, field=self.field)


def invalid(field: str, message: str) -> RequestError:
    """Build an `invalid_request` error for the argument at `field`."""
    return RequestError("invalid_request", message, field)


def not_found(field: str, kind: str, value: object) -> RequestError:
    """Build a `not_found` error naming the missing id."""
    return RequestError("not_found", f"{kind} {value} not found", field)
