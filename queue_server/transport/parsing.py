"""Turn one stream entry into a validated Request, or into an error reply naming the field.

An entry has a single field ``body``, a JSON object. Its ``args`` are checked against
the model of its op here, so a malformed request never reaches the transaction. When
an entry is too broken to name its sender, there is nobody to reply to: the caller logs
it and acknowledges it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from queue_server.protocol import (
    PROTOCOL_VERSION,
    ClaimAndStartArgs,
    CreateFlowRunArgs,
    CreateTaskRunArgs,
    ErrorInfo,
    ProposeStateArgs,
    ReleaseWorkerArgs,
    Reply,
    Request,
    RunIdArgs,
    RunIdsArgs,
)

BODY_FIELD = b"body"
ARGS_MODELS: dict[str, type[BaseModel] | None] = {
    "create_task_run": CreateTaskRunArgs,
    "create_flow_run": CreateFlowRunArgs,
    "propose_state": ProposeStateArgs,
    "claim_and_start": ClaimAndStartArgs,
    "read_run": RunIdArgs,
    "read_runs": RunIdsArgs,
    "release_worker": ReleaseWorkerArgs,
    "cancel_run": RunIdArgs,
    "ping": None,
}
# Used only when the body is not valid JSON or too large to parse: a best effort to find
# whom to tell. The same length limit as Request.client_id applies.
CLIENT_ID_PATTERN = re.compile(rb'"client_id"\s*:\s*"([^"\\]{1,200})"')
REQUEST_ID_PATTERN = re.compile(rb'"request_id"\s*:\s*"([0-9a-fA-F-]{32,36})"')


@dataclass(frozen=True)
class RejectedEntry:
    """An invalid stream entry; `client_id` is None when the entry names no readable client."""

    client_id: str | None
    request_id: UUID | None
    error: ErrorInfo

    def reply(self) -> Reply:
        return Reply(request_id=self.request_id, ok=False, error=self.error)


def parse_entry(fields: dict[Any, Any], max_request_bytes: int) -> Request | RejectedEntry:
    """Validate one entry's fields into a Request, or describe why it is rejected."""
    body = fields.get(BODY_FIELD, fields.get("body"))
    if body is None:
        return _reject(None, None, "body", "invalid request: the stream entry has no body field")
    if isinstance(body, str):
        body = body.encode()

    if len(body) > max_request_bytes:
        return _reject(
            *_scan_ids(body),
            "body",
            f"invalid request: the body is {len(body)} bytes, more than the limit of "
            f"{max_request_bytes} bytes (TASKGATE_MAX_REQUEST_BYTES)",
        )

    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _reject(*_scan_ids(body), "body", f"invalid request: the body is not JSON ({error})")
    if not isinstance(document, dict):
        return _reject(None, None, "body", "invalid request: the body is not a JSON object")

    client_id, request_id = _read_ids(document)
    try:
        request = Request.model_validate(document)
    except ValidationError as error:
        field, message = _first_error(error)
        if field == "client_id":
            client_id = None
        return _reject(client_id, request_id, field, f"invalid request: {field}: {message}")

    if request.v != PROTOCOL_VERSION:
        return _reject(
            client_id,
            request_id,
            "v",
            f"invalid request: protocol version {request.v} is not supported; "
            f"this service speaks version {PROTOCOL_VERSION}",
        )
    return _check_args(request)


def _check_args(request: Request) -> Request | RejectedEntry:
    model = ARGS_MODELS[request.op]
    if model is None:
        if request.args:
            name = sorted(request.args)[0]
            return _reject(
                request.client_id,
                request.request_id,
                f"args.{name}",
                f"invalid request: op {request.op} takes no arguments, got {name!r}",
            )
        return request
    try:
        model.model_validate(request.args)
    except ValidationError as error:
        field, message = _first_error(error)
        return _reject(
            request.client_id,
            request.request_id,
            f"args.{field}",
            f"invalid request: args.{field}: {message}",
        )
    return request


def _first_error(error: ValidationError) -> tuple[str, str]:
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return field, first["msg"]


def _read_ids(document: dict[str, Any]) -> tuple[str | None, UUID | None]:
    raw_client = document.get("client_id")
    client_id = raw_client if isinstance(raw_client, str) and 0 < len(raw_client) <= 200 else None
    return client_id, _as_uuid(document.get("request_id"))


def _scan_ids(body: bytes) -> tuple[str | None, UUID | None]:
    client_match = CLIENT_ID_PATTERN.search(body)
    request_match = REQUEST_ID_PATTERN.search(body)
    client_id = None
    if client_match:
        try:
            client_id = client_match.group(1).decode()
        except UnicodeDecodeError:
            client_id = None
    request_id = _as_uuid(request_match.group(1).decode()) if request_match else None
    return client_id, request_id


def _as_uuid(value: Any) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _reject(
    client_id: str | None, request_id: UUID | None, field: str, message: str
) -> RejectedEntry:
    return RejectedEntry(
        client_id=client_id,
        request_id=request_id,
        error=ErrorInfo(code="invalid_request", message=message, field=field),
    )
