"""The decision pruner keeps each run's last decisions once their transition ids expire."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from queue_server.loops.pruner import DecisionPruner
from tests.loops.runs import claim, create_run
from tests.transport.stack import running_stack, stack_settings

pytestmark = pytest.mark.integration


async def count_decisions(stack, run_id) -> int:
    """Count the run's stored decisions (reads return at most `decisions_kept`)."""
    async with stack.database.read_session() as session:
        result = await session.execute(
            text("SELECT count(*) FROM decisions WHERE run_id = :run_id"),
            {"run_id": run_id.hex if stack.database.is_sqlite else run_id},
        )
        return result.scalar_one()


async def test_pruner_keeps_last_decisions(clean_redis, sqlite_url, key_prefix):
    settings = stack_settings(
        clean_redis, sqlite_url, key_prefix, decisions_kept=1, transition_retention=0.001
    )
    async with running_stack(settings, start=False) as stack:
        run_id, state_id = await create_run(stack)
        await claim(stack, run_id, state_id, "worker-p", start=True)
        before = await count_decisions(stack, run_id)

        stop = asyncio.Event()
        pruner = DecisionPruner(stack.service, interval=0.05)
        task = asyncio.create_task(pruner.run(stop))
        after = before
        for _ in range(600):
            after = await count_decisions(stack, run_id)
            if after == 1:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        kept = await stack.service.read_decisions(run_id)

    assert before == 3
    assert after == 1
    assert kept[0].proposed_type.value == "RUNNING"
