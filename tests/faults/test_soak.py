"""Soak: thousands of runs over four worker processes while one is killed every few seconds.

The default of 2,000 runs runs in the faults suite; set ``TASKGATE_SOAK_RUNS=10000`` for
the long soak. Set ``TASKGATE_SOAK_REPORT`` to a file path to have the figures written
there as JSON as well as printed.

Every run must end Completed with exactly one Completed state; no slot of the soak's tag
limit may be held at the end, no job may be left in any queue, and no run may be left
Pending or Running. A run can execute more than once only when a killed worker was
executing it, so the executions beyond one per run are counted and reported.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.faults import tasks
from tests.faults.harness import (
    FINAL_STATE_TYPES,
    ManagedProcess,
    Stack,
    executions,
    fast_settings,
    wait_until,
)
from tests.servers import free_port

RUNS = int(os.environ.get("TASKGATE_SOAK_RUNS", "2000"))
# A longer heartbeat TTL than the other fault tests: with workers restarting every few
# seconds on a busy machine, a live worker's beat can lag, and a reaped live worker only
# adds retries.
HEARTBEAT_TTL_SECONDS = 6.0

# Generous give-up time for a loaded machine; about 10,000 runs need the long budget.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(max(900, RUNS // 2))]
WORKERS = 4
WORKER_CONCURRENCY = 4
# Seconds between two worker kills.
KILL_EVERY_SECONDS = 5.0
BATCH_SIZE = 200
# The submitter waits while this many runs are unfinished, as a producer that watches
# its backlog would, so the soak measures recovery rather than an ever-longer queue.
MAX_BACKLOG = 600
# Below the 16 slots of the four workers, so some runs are handed back while waiting.
SOAK_TAG_LIMIT = 12


def unfinished(stack: Stack) -> int:
    return sum(1 for kind, _ in stack.run_states().values() if kind not in FINAL_STATE_TYPES)


def test_soak_with_worker_kills(stack: Stack, execution_log) -> None:
    stack.settings = fast_settings(heartbeat_ttl=HEARTBEAT_TTL_SECONDS)
    port = free_port()
    stack.start_service(http_port=port)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/concurrency-limits",
        json={"tag": tasks.SOAK_TAG, "limit": SOAK_TAG_LIMIT},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    workers: list[ManagedProcess] = [
        stack.start_worker(concurrency=WORKER_CONCURRENCY, name=f"worker-{index}")
        for index in range(WORKERS)
    ]
    client = stack.client()
    started = time.monotonic()

    failures: list[BaseException] = []
    submitted: list[int] = []

    def submit() -> None:
        try:
            for first in range(0, RUNS, BATCH_SIZE):
                wait_until(
                    lambda: unfinished(stack) < MAX_BACKLOG, 600, "a shorter backlog", interval=1
                )
                count = min(BATCH_SIZE, RUNS - first)
                labels = [f"s{first + index}" for index in range(count)]
                futures = tasks.soak_step.map(
                    [str(execution_log)] * count, labels, [0.01] * count, client=client
                )
                submitted.append(len(futures))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    submitter = threading.Thread(target=submit, name="submitter", daemon=True)
    submitter.start()

    chooser = random.Random(RUNS)
    kills = 0
    while True:
        time.sleep(KILL_EVERY_SECONDS)
        states = stack.run_states()
        finished = sum(1 for kind, _ in states.values() if kind in FINAL_STATE_TYPES)
        print(f"soak progress: {time.monotonic() - started:.0f} s, {finished} runs ended")
        if not submitter.is_alive() and len(states) == RUNS and finished == RUNS:
            break
        assert not failures, failures
        victim = workers.pop(chooser.randrange(len(workers)))
        victim.kill()
        kills += 1
        workers.append(
            stack.start_worker(concurrency=WORKER_CONCURRENCY, name=f"worker-{WORKERS + kills}")
        )

    elapsed = time.monotonic() - started
    submitter.join()
    assert failures == []
    assert sum(submitted) == RUNS

    final = stack.run_states()
    assert len(final) == RUNS
    assert Counter(kind for kind, _ in final.values()) == {"COMPLETED": RUNS}

    history = stack.state_history()
    completions = Counter(
        [kind for kind, _ in states].count("COMPLETED") for states in history.values()
    )
    assert completions == {1: RUNS}
    assert stack.slot_holders() == []
    # A worker killed between its accepted claim and removing the job leaves a stale entry;
    # another worker takes it once arq's in-progress key expires, gets ABORT and removes it.
    wait_until(
        lambda: all(depth == 0 for depth in stack.queued_jobs().values()),
        120,
        "every queue to drain",
        interval=0.5,
    )
    left = [kind for kind, _ in final.values() if kind in ("PENDING", "RUNNING")]
    assert left == []

    counts = executions(execution_log)
    assert len(counts) == RUNS
    retried = sum(1 for states in history.values() if ("SCHEDULED", "AwaitingRetry") in states)
    figures = {
        "runs": RUNS,
        "workers": WORKERS,
        "worker_concurrency": WORKER_CONCURRENCY,
        "worker_kills": kills,
        "seconds": round(elapsed, 1),
        "executions": sum(counts.values()),
        "runs_executed_more_than_once": sum(1 for count in counts.values() if count > 1),
        "runs_retried_after_a_kill": retried,
        "runs_handed_back_for_a_slot": sum(
            1 for states in history.values() if ("SCHEDULED", "AwaitingConcurrencySlot") in states
        ),
    }
    print(f"soak figures: {json.dumps(figures)}")
    report = os.environ.get("TASKGATE_SOAK_REPORT")
    if report:
        with open(report, "w") as handle:
            json.dump(figures, handle, indent=2)
    assert kills >= 1
    # Only a run whose worker died while executing it may execute twice.
    assert figures["runs_executed_more_than_once"] <= retried
