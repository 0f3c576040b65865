"""Claims: one worker wins a Scheduled run, and stale claims and tokens are fenced off."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

from queue_server.db.engine import Database
from queue_server.service import TransitionService
from queue_server.settings import Settings
from tests.service.requests import claim_request, create_request, only_reply, propose_request


async def create_run(service: TransitionService, **run_fields: Any) -> tuple[UUID, str]:
    """Create a background run; return its id and the id of its Scheduled state."""
    run_id = uuid4()
    reply = only_reply(await service.apply_batch([create_request(run_id, **run_fields)]))
    assert reply.ok, reply.error
    return run_id, reply.result["orchestration"]["state"]["id"]


async def claim(service: TransitionService, run_id: UUID, state_id: str, worker_id: str) -> dict:
    reply = only_reply(
        await service.apply_batch([claim_request(run_id, state_id, worker_id=worker_id)])
    )
    assert reply.ok, reply.error
    return reply.result


async def test_twenty_concurrent_claims_one_wins(
    service: TransitionService, migrated_url: str, settings: Settings
) -> None:
    run_id, state_id = await create_run(service)
    databases = [Database(migrated_url) for _ in range(20)]
    replicas = [TransitionService(database, settings) for database in databases]
    try:
        results = await asyncio.gather(
            *(
                claim(replica, run_id, state_id, f"worker-{index}")
                for index, replica in enumerate(replicas)
            )
        )
    finally:
        for database in databases:
            await database.dispose()

    claim_statuses = sorted(result["claim"]["status"] for result in results)
    assert claim_statuses == ["ABORT"] * 19 + ["ACCEPT"]
    winners = [result for result in results if result["claim"]["status"] == "ACCEPT"]
    assert winners[0]["start"]["status"] == "ACCEPT"
    assert all(result["start"] is None for result in results if result not in winners)

    states = await service.read_states(run_id)
    assert [state.type.value for state in states] == ["SCHEDULED", "PENDING", "RUNNING"]
    decisions = await service.read_decisions(run_id)
    assert [decision.status for decision in decisions].count("ABORT") == 19
    assert all(
        decision.rule == "EnforceClaim" for decision in decisions if decision.status == "ABORT"
    )


async def test_claim_of_a_superseded_state_aborts(service: TransitionService) -> None:
    run_id, first_state_id = await create_run(service)
    first = await claim(service, run_id, first_state_id, "worker-1")
    token = first["claim"]["state"]["state_details"]["claim_token"]
    failed = only_reply(
        await service.apply_batch(
            [propose_request(run_id, {"type": "FAILED", "state_details": {"claim_token": token}})]
        )
    )
    assert failed.ok, failed.error
    before = await service.read_states(run_id)

    redelivered = await claim(service, run_id, first_state_id, "worker-2")

    assert redelivered["claim"]["status"] == "ABORT"
    assert redelivered["claim"]["rule"] == "EnforceClaim"
    assert redelivered["start"] is None
    assert await service.read_states(run_id) == before
    assert (await service.read_run(run_id)).worker_id == "worker-1"


async def test_stale_claim_token_aborts(service: TransitionService) -> None:
    run_id, state_id = await create_run(service)
    await claim(service, run_id, state_id, "worker-1")
    before = await service.read_states(run_id)

    stale = only_reply(
        await service.apply_batch(
            [
                propose_request(
                    run_id,
                    {"type": "COMPLETED", "state_details": {"claim_token": str(uuid4())}},
                    worker_id="worker-2",
                )
            ]
        )
    )

    assert stale.ok, stale.error
    assert stale.result["status"] == "ABORT"
    assert stale.result["rule"] == "EnforceClaim"
    assert await service.read_states(run_id) == before
    assert (await service.read_run(run_id)).state.type.value == "RUNNING"


async def test_token_cleared_by_cancel_fences_worker(service: TransitionService) -> None:
    run_id, state_id = await create_run(service)
    started = await claim(service, run_id, state_id, "worker-1")
    token = started["claim"]["state"]["state_details"]["claim_token"]

    cancelled, _ = await service.cancel_run(run_id)
    assert cancelled.status == "ACCEPT"
    assert cancelled.state.type.value == "CANCELLING"

    completed = {"type": "COMPLETED", "state_details": {"claim_token": token}}
    late = only_reply(await service.apply_batch([propose_request(run_id, completed)]))
    assert late.result["status"] == "ABORT"
    assert (await service.read_run(run_id)).state.type.value == "CANCELLING"

    stopped = only_reply(
        await service.apply_batch([propose_request(run_id, {"type": "CANCELLED"})])
    )
    assert stopped.result["status"] == "ACCEPT"
    assert (await service.read_run(run_id)).state.type.value == "CANCELLED"
