"""A small test bench: in-memory stores, a controlled clock and a run to orchestrate."""

from __future__ import annotations

from uuid import uuid4

import pendulum

from policy.context import (
    Actor,
    FlowOrchestrationContext,
    PolicySettings,
    TaskOrchestrationContext,
)
from policy.memory import (
    MemoryCache,
    MemoryClock,
    MemoryEvents,
    MemoryFlowRuns,
    MemoryRecorder,
    MemorySlots,
    MemorySubflowParents,
)
from policy.orchestrate import orchestrate
from policy.policies import OrchestrationPolicy, select_flow_policy, select_task_policy
from policy.result import OrchestrationResult
from policy.runs import FlowRun, TaskRun, TaskRunPolicy
from policy.states import State

T0 = pendulum.datetime(2026, 1, 1, 12, 0, 0, tz="UTC")


def task_run(**fields: object) -> TaskRun:
    """Build a task run with a fresh id and the task key `tests.add`."""
    fields.setdefault("id", uuid4())
    fields.setdefault("task_key", "tests.add")
    return TaskRun(**fields)


def background_run(**fields: object) -> TaskRun:
    fields.setdefault("is_background", True)
    return task_run(**fields)


def retrying_policy(retries: int, retry_delay: float | list[float] | None = 0) -> TaskRunPolicy:
    return TaskRunPolicy(retries=retries, retry_delay=retry_delay)


class Bench:
    """The stores one test shares between its orchestrations."""

    def __init__(
        self, limits: dict[str, int] | None = None, settings: PolicySettings | None = None
    ):
        self.clock = MemoryClock(T0)
        self.cache = MemoryCache()
        self.slots = MemorySlots(limits)
        self.flow_runs = MemoryFlowRuns()
        self.recorder = MemoryRecorder(self.cache)
        self.events = MemoryEvents()
        self.subflow_parents = MemorySubflowParents()
        self.settings = settings or PolicySettings()
        self.last_context: TaskOrchestrationContext | FlowOrchestrationContext | None = None

    def task_context(
        self, run: TaskRun, proposed: State, actor: Actor = "worker"
    ) -> TaskOrchestrationContext:
        return TaskOrchestrationContext(
            run,
            run.state,
            proposed,
            self.clock,
            self.cache,
            self.slots,
            self.flow_runs,
            self.recorder,
            self.events,
            settings=self.settings,
            actor=actor,
        )

    def flow_context(self, run: FlowRun, proposed: State, actor: Actor = "worker"):
        return FlowOrchestrationContext(
            run,
            run.state,
            proposed,
            self.clock,
            self.recorder,
            self.events,
            subflow_parents=self.subflow_parents,
            settings=self.settings,
            actor=actor,
        )

    async def propose(
        self,
        run: TaskRun,
        proposed: State,
        policy: OrchestrationPolicy | None = None,
        *,
        actor: Actor = "worker",
        force: bool = False,
        variant: str = "taskgate",
    ) -> OrchestrationResult:
        """Orchestrate `proposed` for the task run; the context stays in `last_context`."""
        if policy is None:
            policy = select_task_policy(run, force=force, variant=variant)
        context = self.task_context(run, proposed, actor)
        self.last_context = context
        return await orchestrate(context, policy)

    async def propose_flow(
        self,
        run: FlowRun,
        proposed: State,
        policy: OrchestrationPolicy | None = None,
        *,
        force: bool = False,
    ) -> OrchestrationResult:
        if policy is None:
            policy = select_flow_policy(force=force)
        context = self.flow_context(run, proposed)
        self.last_context = context
        return await orchestrate(context, policy)

    def place(self, run: TaskRun | FlowRun, state: State) -> State:
        """Put the run in `state` directly, as storage would have loaded it."""
        run.state = state
        run.state_id = state.id
        run.state_type = state.type
        run.state_name = state.name
        run.state_timestamp = state.timestamp
        self.recorder.history[run.id].append(state)
        self.cache.track(run.id, state)
        return state

    def written(self, run: TaskRun | FlowRun) -> list[State]:
        return self.recorder.states_of(run.id)
