"""Reads for the reconciler, the reaper and operators, flow runs, and decision pruning."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pendulum
from sqlalchemy import update

from queue_server.db.engine import Database
from queue_server.db.models import DecisionRow
from queue_server.service import TransitionService
from queue_server.settings import Settings
from tests.service.requests import claim_request, create_request, only_reply, request


async def test_scheduled_jobs_carry_parameters(service: TransitionService) -> None:
    due = pendulum.now("UTC").add(minutes=5)
    queued_id, started_id = uuid4(), uuid4()
    created = await service.apply_batch(
        [
            create_request(queued_id, scheduled_time=due.isoformat(), cache_key="k1",
                           timeout_seconds=9.5),
            create_request(started_id),
        ]
    )
    started_state = created.replies[1][1].result["orchestration"]["state"]["id"]
    await service.apply_batch([claim_request(started_id, started_state)])

    jobs = await service.scheduled_background_jobs()

    assert [job.run_id for job in jobs] == [queued_id]
    job = jobs[0]
    assert job.due == due
    assert job.parameters.value == {"x": 1, "y": 2}
    assert job.cache_key == "k1"
    assert job.timeout_seconds == 9.5
    assert job in created.effects.jobs


async def test_filter_runs_and_read_runs(service: TransitionService) -> None:
    tagged_id, plain_id = uuid4(), uuid4()
    await service.apply_batch(
        [
            create_request(tagged_id, tags=["nightly"], task_key="tests.report"),
            create_request(plain_id),
        ]
    )

    by_tag = await service.filter_runs(tag="nightly")
    by_key = await service.filter_runs(task_key="tests.add")
    scheduled = await service.filter_runs(state_type="SCHEDULED", state_name="Scheduled")
    read = only_reply(
        await service.apply_batch(
            [request("read_runs", {"run_ids": [str(plain_id), str(uuid4()), str(tagged_id)]})]
        )
    )

    assert [run.id for run in by_tag] == [tagged_id]
    assert [run.id for run in by_key] == [plain_id]
    assert {run.id for run in scheduled} == {tagged_id, plain_id}
    assert [run["id"] for run in read.result] == [str(plain_id), str(tagged_id)]
    assert all(run["state"]["data"] is None for run in read.result)


async def test_flow_run_create_and_propose(service: TransitionService) -> None:
    flow_run_id, transition_id = uuid4(), uuid4()
    create = request(
        "create_flow_run",
        {
            "run": {"id": str(flow_run_id), "flow_name": "etl"},
            "state": {"type": "PENDING"},
            "transition_id": str(transition_id),
        },
    )
    first = only_reply(await service.apply_batch([create]))
    resent = only_reply(await service.apply_batch([create]))
    running = only_reply(
        await service.apply_batch(
            [
                request(
                    "propose_state",
                    {
                        "run_id": str(flow_run_id),
                        "kind": "flow_run",
                        "state": {"type": "RUNNING"},
                        "transition_id": str(uuid4()),
                    },
                )
            ]
        )
    )

    assert first.ok, first.error
    assert first.result["orchestration"]["status"] == "ACCEPT"
    assert resent.result["orchestration"] == first.result["orchestration"]
    assert running.result["status"] == "ACCEPT"
    assert running.result["run_count"] == 1
    assert [decision.status for decision in await service.read_decisions(flow_run_id)] == [
        "ACCEPT", "ACCEPT",
    ]


async def test_prune_keeps_recent_transition_ids(
    database: Database, settings: Settings
) -> None:
    settings.decisions_kept = 1
    service = TransitionService(database, settings)
    run_id = uuid4()
    created = only_reply(await service.apply_batch([create_request(run_id)]))
    await service.apply_batch(
        [claim_request(run_id, created.result["orchestration"]["state"]["id"])]
    )
    assert len(await service.read_decisions(run_id)) == 3
    assert len(await service.read_decisions(run_id, limit=1)) == 1

    assert await service.prune_decisions() == 0
    assert len(await service.read_decisions(run_id)) == 3

    old = pendulum.now("UTC") - timedelta(seconds=settings.transition_retention + 60)
    async with database.write_session() as session:
        await session.execute(update(DecisionRow).values(created=old))
        await session.commit()
    assert await service.prune_decisions() == 2
    remaining = await service.read_decisions(run_id)
    assert [decision.proposed_type.value for decision in remaining] == ["RUNNING"]
