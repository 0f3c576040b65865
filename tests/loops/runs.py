"""Create and claim background runs through the service's batch path, for loop tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from queue_server.protocol import Reply, Request
from tests.transport.stack import Stack
from tests.transport.wire import create_task_run_args


async def apply(stack: Stack, op: str, args: dict[str, Any]) -> Reply:
    """Apply one request as the transport would, carrying out its effects after the commit."""
    request = Request(request_id=uuid4(), client_id="loop-test", op=op, args=args)
    outcome = await stack.service.apply_batch([request])
    await stack.post_commit.carry_out(outcome.effects)
    [(_, reply)] = outcome.replies
    assert reply.ok, reply.error
    return reply


async def create_run(
    stack: Stack, task_key: str = "tests.add", retries: int = 0
) -> tuple[UUID, UUID]:
    """Create a background run; return its id and the id of its Scheduled state."""
    args = create_task_run_args(task_key, empirical_policy={"retries": retries})
    reply = await apply(stack, "create_task_run", args)
    state = reply.result["orchestration"]["state"]
    return UUID(reply.result["run"]["id"]), UUID(state["id"])


async def claim(stack: Stack, run_id: UUID, state_id: UUID, worker_id: str, start: bool) -> None:
    """Claim the run for a worker (Pending), and put it in Running when `start` is set."""
    args = {
        "run_id": str(run_id),
        "claimed_state_id": str(state_id),
        "worker_id": worker_id,
        "claim_transition_id": str(uuid4()),
        "start_transition_id": str(uuid4()),
    }
    if start:
        reply = await apply(stack, "claim_and_start", args)
        assert reply.result["start"]["status"] == "ACCEPT", reply.result
        return
    claim_state = {
        "type": "PENDING",
        "state_details": {"claimed_state_id": str(state_id)},
    }
    reply = await apply(stack, "propose_state", {
        "run_id": str(run_id),
        "state": claim_state,
        "transition_id": str(uuid4()),
        "worker_id": worker_id,
    })
    assert reply.result["status"] == "ACCEPT", reply.result
