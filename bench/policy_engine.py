"""The orchestration policy alone: a background run's four transitions, in process.

Each run goes Scheduled (proposed by the client), Pending (the worker's claim of that
Scheduled state), Running and Completed (carrying the claim token), under the policy
the service selects for background runs, with the in-memory stores. There is no
Redis, SQL or serialization here, so this is the ceiling the rules themselves set.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
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


def profile_lines(runs: int, top: int = 12) -> list[str]:
    """Orchestrate `runs` runs under cProfile; return the functions with the most self time.

    cProfile slows every call, so the shares rank the hot spots but the rate under it
    means nothing.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(orchestrate_runs(runs))
    profiler.disable()

    entries = pstats.Stats(profiler).stats  # (file, line, function) -> (cc, nc, tt, ct, callers)
    total = sum(entry[2] for entry in entries.values())
    ranked = sorted(entries.items(), key=lambda item: -item[1][2])[:top]
    lines = [f"policy engine, {runs} runs under cProfile: functions by self time"]
    for (path, _, function), entry in ranked:
        location = "/".join(path.split("/")[-2:])
        lines.append(f"  {entry[2] / total:5.1%}  {function} ({location}), {entry[1]} calls")
    return lines


def measure_transitions_per_second(runs: int) -> float:
    """Return orchestrated transitions per second over `runs` background runs."""
    asyncio.run(orchestrate_runs(min(runs, 200)))  # warm-up: imports and first-call caches
    seconds = asyncio.run(orchestrate_runs(runs))
    return runs * TRANSITIONS_PER_RUN / seconds
