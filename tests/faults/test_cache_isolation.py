"""Fifty concurrent submissions of one cache key with cache isolation: one execution.

While the first run holds the cache key in Running, every other run that proposes
Running with that key is handed back; once the first completes, the others come back
Cached without executing the function.
"""

from __future__ import annotations

import pytest

from tests.faults import tasks
from tests.faults.harness import Stack, executions

pytestmark = pytest.mark.faults

SUBMISSIONS = 50


def test_one_execution_per_cache_key(stack: Stack, execution_log) -> None:
    stack.start_service()
    stack.start_worker(concurrency=10, name="worker-a")
    stack.start_worker(concurrency=10, name="worker-b")
    client = stack.client()

    futures = tasks.cached_once.map(
        [str(execution_log)] * SUBMISSIONS,
        ["shared"] * SUBMISSIONS,
        [1.0] * SUBMISSIONS,
        client=client,
    )
    final = stack.wait_all_final(SUBMISSIONS)

    assert [future.result(timeout=60) for future in futures] == ["value of shared"] * SUBMISSIONS
    assert executions(execution_log) == {"shared": 1}
    names = sorted(name for _, name in final.values())
    assert names == ["Cached"] * (SUBMISSIONS - 1) + ["Completed"]
    assert {kind for kind, _ in final.values()} == {"COMPLETED"}

    history = stack.state_history()
    executed = [
        run_id for run_id, states in history.items() if ("COMPLETED", "Completed") in states
    ]
    assert len(executed) == 1
    handed_back = [
        run_id
        for run_id, states in history.items()
        if ("SCHEDULED", "AwaitingConcurrencySlot") in states
    ]
    assert handed_back
    # Only runs that met the first one in Running were handed back; none of them executed.
    assert executed[0] not in handed_back
