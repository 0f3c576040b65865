"""The orchestration policy alone: a background run's four transitions, in process.

Each run goes Scheduled (proposed by the client), Pending (the worker's claim of that
Scheduled state), Running and Completed (carrying the claim token), under the policy
the service selects for background runs, with the in-memory stores. There is no
Redis, SQL or serialization here, so this is the ceiling the rules themselves set.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from uuid import uuid4

from bench.harness import BenchmarkError
from policy.context import TaskOrchestrationContext
from policy.memory import (
    MemoryCache,
    MemoryEvents,
    MemoryFlowRuns,
    MemoryRecorder,
    MemorySlots,
)
from policy.orchestrate import orchestrate
from policy.policies import select_task_policy
from policy.result import SetStateStatus
from policy.runs import TaskRun
from policy.states import Completed, Pending, Running, Scheduled, State, StateDetails, utc_now

TRANSITIONS_PER_RUN = 4


class WallClock:
    """The real time, as the service judges it."""

    def now(self) -> datetime:
        return utc_now()


class Stores:
    """The in-memory stores shared by every orchestration of one measurement."""

    def __init__(self) -> None:
        self.clock = WallClock()
        self.cache = MemoryCache()
        self.slots = MemorySlots()
        self.flow_runs = MemoryFlowRuns()
        self.recorder = MemoryRecorder(self.cache)
        self.events = MemoryEvents()

    async def propose(self, run: TaskRun, proposed: State, actor: str) -> State:
        """Orchestrate one proposal and return the validated state; raise unless accepted."""
        proposed.state_details.transition_id = uuid4()
        context = TaskOrchestrationContext(
            run,
            run.state,
            proposed,
            self.clock,
            self.cache,
            self.slots,
            self.flow_runs,
            self.recorder,
            self.events,
            actor=actor,
        )
        result = await orchestrate(context, select_task_policy(run, force=False))
        if result.status is not SetStateStatus.ACCEPT or result.state is None:
            raise BenchmarkError(
                f"{proposed.type.value} of run {run.id} was not accepted: "
                f"{result.status.value} by {result.rule}: {result.reason}"
            )
        return result.state


async def orchestrate_runs(runs: int) -> float:
    """Drive `runs` background runs through their four transitions; return the seconds taken."""
    stores = Stores()
    started = time.perf_counter()
    for _ in range(runs):
        run = TaskRun(id=uuid4(), task_key="bench.noop", is_background=True)
        now = utc_now()
        scheduled = await stores.propose(
            run,
            Scheduled(now, state_details=StateDetails(deferred=True, scheduled_time=now)),
            "client",
        )
        claim = await stores.propose(run, Pending(claimed_state_id=scheduled.id), "worker")
        token = claim.state_details.claim_token
        await stores.propose(run, Running(claim_token=token), "worker")
        await stores.propose(
            run, Completed(claim_token=token, data={"type": "result", "value": None}), "worker"
        )
    return time.perf_counter() - started


def measure_transitions_per_second(runs: int) -> float:
    """Return orchestrated transitions per second over `runs` background runs."""
    asyncio.run(orchestrate_runs(min(runs, 200)))  # warm-up: imports and first-call caches
    seconds = asyncio.run(orchestrate_runs(runs))
    return runs * TRANSITIONS_PER_RUN / seconds
