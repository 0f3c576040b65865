"""Typed records of the request transport: requests, replies and the views they carry.

Clients, workers and the service all speak these models; they import no SQLAlchemy
and no Redis, so user code can import them cheaply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from policy.runs import TaskRunPolicy
from policy.states import State, StateDetails, StateType

PROTOCOL_VERSION = 1

Status = Literal["ACCEPT", "REJECT", "WAIT", "ABORT"]
ErrorCode = Literal[
    "invalid_request", "not_found", "queue_full", "conflict", "forbidden", "internal"
]
Op = Literal[
    "create_task_run",
    "create_flow_run",
    "propose_state",
    "claim_and_start",
    "read_run",
    "read_runs",
    "release_worker",
    "cancel_run",
    "ping",
]


class Envelope(BaseModel):
    """Serialized parameters or a serialized result value."""

    serializer: Literal["json", "pickle"] = "json"
    value: Any = None


class StateCreate(BaseModel):
    """A proposed state; the service mints its id and timestamp."""

    model_config = ConfigDict(extra="forbid")

    type: StateType
    name: str | None = None
    message: str | None = None
    data: Any = None
    state_details: StateDetails = Field(default_factory=StateDetails)

    def to_state(self, now: datetime) -> State:
        # The details' fields are immutable values except one dict, copied here; a
        # shallow copy costs a small part of `model_copy(deep=True)`.
        details = self.state_details.model_copy()
        if details.run_input_keyset is not None:
            details.run_input_keyset = dict(details.run_input_keyset)
        return State(
            type=self.type,
            name=self.name or "",
            message=self.message,
            data=self.data,
            state_details=details,
            timestamp=now,
        )


class TaskRunCreate(BaseModel):
    """Everything `.delay()` sends to create one background task run."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    task_key: str = Field(min_length=1, max_length=500)
    name: str = ""
    tags: list[str] = Field(default_factory=list)
    parameters: Envelope = Field(default_factory=lambda: Envelope(value={}))
    empirical_policy: TaskRunPolicy = Field(default_factory=TaskRunPolicy)
    cache_key: str | None = None
    cache_expiration: datetime | None = None
    refresh_cache: bool = False
    persist_result: bool = True
    timeout_seconds: float | None = Field(default=None, gt=0)
    scheduled_time: datetime | None = None
    serializer: Literal["json", "pickle"] = "json"
    flow_run_id: UUID | None = None


class FlowRunCreate(BaseModel):
    """A flow run to create; its first state is orchestrated like any other."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    flow_name: str = Field(min_length=1)
    name: str = ""
    tags: list[str] = Field(default_factory=list)
    deployment_id: UUID | None = None
    parent_task_run_id: UUID | None = None
    retries: int | None = Field(default=None, ge=0)
    retry_delay: int | None = Field(default=None, ge=0)


class Request(BaseModel):
    """One request on the transport stream."""

    model_config = ConfigDict(extra="forbid")

    v: int = PROTOCOL_VERSION
    request_id: UUID
    client_id: str = Field(min_length=1, max_length=200)
    op: Op
    args: dict[str, Any] = Field(default_factory=dict)


class CreateTaskRunArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: TaskRunCreate
    transition_id: UUID


class CreateFlowRunArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: FlowRunCreate
    state: StateCreate | None = None
    transition_id: UUID


class ProposeStateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: UUID
    state: StateCreate
    transition_id: UUID
    worker_id: str | None = None
    kind: Literal["task_run", "flow_run"] = "task_run"


class ClaimAndStartArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: UUID
    claimed_state_id: UUID
    worker_id: str
    claim_transition_id: UUID
    start_transition_id: UUID
    running: StateCreate | None = None


class RunIdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: UUID


class RunIdsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_ids: list[UUID] = Field(max_length=10_000)


class ReleaseWorkerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: str
    run_ids: list[UUID]


class OrchestrationResultView(BaseModel):
    """The service's answer to one proposed transition."""

    run_id: UUID
    status: Status
    state: State | None = None
    reason: str | None = None
    delay_seconds: float | None = None
    rule: str | None = None
    # The run's run count once this transition is decided (its attempt number while
    # Running), so a worker can log it without another read; None when not filled in.
    run_count: int | None = None


class TaskRunView(BaseModel):
    """A task run as readers see it: its settings, counters and current state."""

    id: UUID
    name: str
    task_key: str
    tags: list[str]
    is_background: bool
    empirical_policy: TaskRunPolicy
    run_count: int
    state: State | None
    start_time: datetime | None = None
    end_time: datetime | None = None
    total_run_time: float = 0.0
    expected_start_time: datetime | None = None
    worker_id: str | None = None
    persist_result: bool = True
    timeout_seconds: float | None = None
    created: datetime | None = None


class FlowRunView(BaseModel):
    """A flow run as readers see it."""

    id: UUID
    name: str
    flow_name: str
    tags: list[str]
    deployment_id: UUID | None = None
    parent_task_run_id: UUID | None = None
    run_count: int
    state: State | None
    start_time: datetime | None = None
    end_time: datetime | None = None
    created: datetime | None = None


class DecisionView(BaseModel):
    """One kept orchestration result of a run, so a person can see why it is not running."""

    run_id: UUID
    transition_id: UUID | None = None
    actor: str
    proposed_type: StateType | None = None
    proposed_name: str | None = None
    status: Status
    rule: str | None = None
    reason: str | None = None
    state_id: UUID | None = None
    delay_seconds: float | None = None
    created: datetime


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    field: str | None = None


class Reply(BaseModel):
    """One reply on a client's reply list."""

    request_id: UUID | None
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


class StateEvent(BaseModel):
    """A committed state change, published on the events channel."""

    run_id: UUID
    task_key: str | None = None
    state_id: UUID
    state_type: StateType
    state_name: str
    timestamp: datetime
