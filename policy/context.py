"""Orchestration contexts: one proposed transition, the stores it may use, its outcome.

A context is built by the caller for one proposal, passed to `orchestrate`, and read
back afterwards: `validated_state`, `status`, `reason`, `delay_seconds`, `decided_by`
and, for task runs, `enqueue_intents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from policy.protocols import (
    CacheStore,
    Clock,
    ConcurrencySlots,
    EnqueueIntent,
    EventSink,
    FlowRunReader,
    StateRecorder,
    SubflowParentUpdater,
)
from policy.result import OrchestrationResult, SetStateStatus
from policy.runs import FlowRun, TaskRun
from policy.states import State, StateType

Actor = Literal["client", "worker", "service", "operator"]


class PolicySettings(BaseModel):
    """Tunable values the rules read. Durations are in seconds."""

    model_config = ConfigDict(frozen=True)

    # WAIT delay returned to a run whose tag concurrency limit is full.
    tag_concurrency_slot_wait_seconds: float = Field(default=10, ge=0)
    # Maximum length of the cache key of a Completed state, in characters.
    max_cache_key_length: int = Field(default=2000, ge=1)
    # WAIT delay returned to a run whose cache key another run has in Running.
    cache_isolation_wait_seconds: float = Field(default=1, ge=0)


# Contexts share one default instance, which is safe because settings are frozen. It
# spares building and validating new settings for every proposal.
DEFAULT_POLICY_SETTINGS = PolicySettings()


@dataclass(eq=False)
class OrchestrationContext:
    """The part of a context that task runs and flow runs share.

    Rules change the proposal only through the helpers of their base class, which
    update `proposed_state` and the outcome fields below together.
    """

    run: TaskRun | FlowRun
    initial_state: State | None
    proposed_state: State | None
    clock: Clock

    # The (from, to) state types as proposed, before any rule changed the proposal.
    intended_transition: tuple[StateType | None, StateType | None] = field(
        default=(None, None), init=False
    )
    validated_state: State | None = field(default=None, init=False)
    status: SetStateStatus = field(default=SetStateStatus.ACCEPT, init=False)
    reason: str | None = field(default=None, init=False)
    delay_seconds: float | None = field(default=None, init=False)
    decided_by: str | None = field(default=None, init=False)
    # The exception a hook raised, once the orchestration ended with ABORT because of it.
    orchestration_error: BaseException | None = field(default=None, init=False)
    # Class names of the rules whose before-hook and after-hook ran, in order.
    rule_signature: list[str] = field(default_factory=list, init=False)
    finalization_signature: list[str] = field(default_factory=list, init=False)

    @property
    def initial_state_type(self) -> StateType | None:
        return self.initial_state.type if self.initial_state else None

    @property
    def proposed_state_type(self) -> StateType | None:
        return self.proposed_state.type if self.proposed_state else None

    @property
    def validated_state_type(self) -> StateType | None:
        return self.validated_state.type if self.validated_state else None

    def transition(self) -> tuple[StateType | None, StateType | None]:
        """Return the current (from, to) pair; `to` is None once the proposal is nullified."""
        # The engine calls this for every rule on entry and exit, so it reads the
        # states directly rather than through the two properties above.
        initial, proposed = self.initial_state, self.proposed_state
        return (
            initial.type if initial is not None else None,
            proposed.type if proposed is not None else None,
        )

    def result(self) -> OrchestrationResult:
        """Build the orchestration result from the outcome fields."""
        return OrchestrationResult(
            status=self.status,
            state=self.validated_state,
            reason=self.reason,
            delay_seconds=self.delay_seconds if self.status is SetStateStatus.WAIT else None,
            rule=self.decided_by,
        )


@dataclass(eq=False)
class TaskOrchestrationContext(OrchestrationContext):
    """A proposed state for a task run."""

    run: TaskRun
    cache: CacheStore
    slots: ConcurrencySlots
    flow_runs: FlowRunReader
    recorder: StateRecorder
    events: EventSink
    settings: PolicySettings = DEFAULT_POLICY_SETTINGS
    actor: Actor = "worker"
    parameters: dict[str, Any] = field(default_factory=dict)

    # Runs to put on their task key's queue once the caller has committed the state.
    enqueue_intents: list[EnqueueIntent] = field(default_factory=list, init=False)

    async def flow_run(self) -> FlowRun | None:
        """Read the flow run this task run belongs to; None for a run outside any flow."""
        if self.run.flow_run_id is None:
            return None
        return await self.flow_runs.read_flow_run(self.run.flow_run_id)


@dataclass(eq=False)
class FlowOrchestrationContext(OrchestrationContext):
    """A proposed state for a flow run."""

    run: FlowRun
    recorder: StateRecorder
    events: EventSink
    subflow_parents: SubflowParentUpdater | None = None
    settings: PolicySettings = DEFAULT_POLICY_SETTINGS
    actor: Actor = "worker"
    parameters: dict[str, Any] = field(default_factory=dict)

    async def flow_run(self) -> FlowRun:
        return self.run
