"""Builders of transport requests for the service tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from queue_server.protocol import Reply, Request

CLIENT_ID = "test-client"


def request(op: str, args: dict[str, Any], request_id: UUID | None = None) -> Request:
    return Request(request_id=request_id or uuid4(), client_id=CLIENT_ID, op=op, args=args)


def create_request(
    run_id: UUID | None = None,
    *,
    task_key: str = "tests.add",
    transition_id: UUID | None = None,
    **run_fields: Any,
) -> Request:
    run = {
        "id": str(run_id or uuid4()),
        "task_key": task_key,
        "parameters": {"serializer": "json", "value": {"x": 1, "y": 2}},
        **run_fields,
    }
    return request(
        "create_task_run", {"run": run, "transition_id": str(transition_id or uuid4())}
    )


def claim_request(
    run_id: UUID,
    claimed_state_id: UUID | str,
    *,
    worker_id: str = "worker-1",
    claim_transition_id: UUID | None = None,
    start_transition_id: UUID | None = None,
) -> Request:
    return request(
        "claim_and_start",
        {
            "run_id": str(run_id),
            "claimed_state_id": str(claimed_state_id),
            "worker_id": worker_id,
            "claim_transition_id": str(claim_transition_id or uuid4()),
            "start_transition_id": str(start_transition_id or uuid4()),
        },
    )


def propose_request(
    run_id: UUID,
    state: dict[str, Any],
    *,
    transition_id: UUID | None = None,
    worker_id: str | None = "worker-1",
) -> Request:
    args: dict[str, Any] = {
        "run_id": str(run_id),
        "state": state,
        "transition_id": str(transition_id or uuid4()),
    }
    if worker_id is not None:
        args["worker_id"] = worker_id
    return request("propose_state", args)


def only_reply(outcome: Any) -> Reply:
    """Return the single reply of a one-request batch."""
    assert len(outcome.replies) == 1
    return outcome.replies[0][1]
