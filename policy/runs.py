"""Run snapshots that the rules read and change during one orchestration.

The service loads a run from SQL into one of these models, the policy mutates it
(run count, start time, claim token, ...), and the service writes it back in the same
savepoint as the new state.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policy.states import State, StateType

# Prefect caps a retry delay list at 50 entries; taskgate keeps that bound.
MAX_RETRY_DELAYS = 50


class TaskRunPolicy(BaseModel):
    """Retry and cache settings frozen onto a task run when it is created."""

    model_config = ConfigDict(validate_assignment=True)

    retries: int | None = Field(default=None, ge=0)
    retry_delay: float | list[float] | None = None
    retry_jitter_factor: float | None = Field(default=None, ge=0)
    # taskgate's cache isolation: while one run is Running with a cache key, another
    # run proposing Running with the same key is handed back until the first ends.
    cache_isolation: bool = False

    @field_validator("retry_delay")
    @classmethod
    def _check_delay(cls, value: float | list[float] | None) -> float | list[float] | None:
        if isinstance(value, list):
            if len(value) > MAX_RETRY_DELAYS:
                raise ValueError(
                    f"retry_delay has {len(value)} entries; at most {MAX_RETRY_DELAYS} are allowed"
                )
            if any(delay < 0 for delay in value):
                raise ValueError(f"retry_delay {value} has a negative entry; use delays >= 0")
        elif value is not None and value < 0:
            raise ValueError(f"retry_delay {value} is negative; use a delay >= 0")
        return value


class FlowRunPolicy(BaseModel):
    """Retry and pause bookkeeping of a flow run."""

    model_config = ConfigDict(validate_assignment=True)

    retries: int | None = Field(default=None, ge=0)
    retry_delay: int | None = Field(default=None, ge=0)
    pause_keys: set[str] = Field(default_factory=set)
    resuming: bool = False
    retry_type: str | None = None


class RunSnapshot(BaseModel):
    """Fields that task runs and flow runs share: the current state and the run clock.

    Fields are validated when the snapshot is built from storage or input, not on
    attribute assignment, because the engine assigns values taken from validated states.
    """

    id: UUID
    name: str = ""
    tags: list[str] = Field(default_factory=list)
    state: State | None = None
    state_id: UUID | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    state_timestamp: datetime | None = None
    run_count: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    total_run_time: float = 0.0  # seconds spent in Running
    expected_start_time: datetime | None = None
    next_scheduled_start_time: datetime | None = None


class TaskRun(RunSnapshot):
    """A task run as the task policies see it."""

    task_key: str
    dynamic_key: str = ""
    flow_run_id: UUID | None = None
    # A background run is one created through `.delay()`; the service chooses the
    # background policy from this stored flag, never from the proposal.
    is_background: bool = False
    empirical_policy: TaskRunPolicy = Field(default_factory=TaskRunPolicy)
    flow_run_run_count: int = 0
    claim_token: UUID | None = None
    worker_id: str | None = None


class FlowRun(RunSnapshot):
    """A flow run as the flow policies see it."""

    flow_name: str = ""
    deployment_id: UUID | None = None
    parent_task_run_id: UUID | None = None
    infrastructure_pid: str | None = None
    empirical_policy: FlowRunPolicy = Field(default_factory=FlowRunPolicy)
