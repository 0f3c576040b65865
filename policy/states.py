"""Run states: the nine state types, state details and the named states.

Rules treat a state as immutable and change a proposal only through the rule engine's
helpers (`reject_transition`, `rename_state`, ...). The state details are the
exception: rules may fill them in place, for example to copy a scheduled time
forward. Every timestamp is a timezone-aware UTC datetime.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pendulum
from pydantic import BaseModel, Field, field_validator, model_validator


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return pendulum.now("UTC")


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if type(value) is pendulum.DateTime and value.tzinfo is pendulum.UTC:
        # The conversion below would return an equal copy, so the value is kept.
        return value
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone; pass an aware UTC time")
    return pendulum.instance(value).in_timezone("UTC")


class StateType(str, enum.Enum):
    """The nine types a run state can have."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    # Enum hashes a member by its name in Python code. Every name equals its value, so
    # str's C hash returns the same number faster, and rules look types up in sets.
    __hash__ = str.__hash__


TERMINAL_STATES: frozenset[StateType] = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)

# Every state type plus None, which stands for "the run has no state yet" on the
# FROM side of a rule.
ALL_STATES: frozenset[StateType | None] = frozenset(set(StateType) | {None})


class StateDetails(BaseModel):
    """Structured facts carried by a state, read and written by the rules.

    Values are validated when the details are built and by the state builders below,
    but not on attribute assignment. The rules assign values taken from validated
    states and runs, and validating each assignment was the engine's largest cost.
    """

    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    child_flow_run_id: UUID | None = None
    scheduled_time: datetime | None = None
    cache_key: str | None = None
    cache_expiration: datetime | None = None
    refresh_cache: bool | None = None
    deferred: bool | None = None
    task_parameters_id: UUID | None = None
    untrackable_result: bool = False
    pause_timeout: datetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    retriable: bool | None = None
    transition_id: UUID | None = None
    traceparent: str | None = None
    deployment_concurrency_lease_id: UUID | None = None
    # taskgate's claim protocol: a worker claims a run by proposing Pending with the id
    # of the Scheduled state its job was enqueued for. The accepted claim gets a claim
    # token, and every later proposal of that worker carries it.
    claim_token: UUID | None = None
    claimed_state_id: UUID | None = None
    claimed_state_name: str | None = None

    _normalize_times = field_validator(
        "scheduled_time", "cache_expiration", "pause_timeout", mode="before"
    )(lambda value: _as_utc(value) if isinstance(value, datetime) else value)


class State(BaseModel):
    """One state of a task run or a flow run.

    Fields are validated when the state is built, not on attribute assignment.
    """

    id: UUID = Field(default_factory=uuid4)
    type: StateType
    name: str = ""
    timestamp: datetime = Field(default_factory=utc_now)
    message: str | None = None
    data: Any = None
    state_details: StateDetails = Field(default_factory=StateDetails)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_is_utc(cls, value: Any) -> Any:
        return _as_utc(value) if isinstance(value, datetime) else value

    @model_validator(mode="after")
    def _fill_defaults(self) -> State:
        if not self.name:
            object.__setattr__(self, "name", self.type.value.title())
        if self.type is StateType.SCHEDULED and self.state_details.scheduled_time is None:
            self.state_details.scheduled_time = self.timestamp
        return self

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_STATES

    def has_persisted_result(self) -> bool:
        """Tell whether `data` is a persisted result rather than an unpersisted marker."""
        return bool(self.data) and not (
            isinstance(self.data, dict) and self.data.get("type") == "unpersisted"
        )

    def fresh_copy(self, now: datetime | None = None, **changes: Any) -> State:
        """Return a copy with a new id and timestamp, keeping type, name, message and data.

        The details are deep-copied so the copy can be changed without touching this
        state. A Scheduled copy keeps its scheduled time.
        """
        copied = self.model_copy(deep=True)
        fields = {
            "id": uuid4(),
            "timestamp": now or utc_now(),
            **changes,
        }
        return copied.model_copy(update=fields)


_DETAIL_FIELDS = frozenset(StateDetails.model_fields)


def _state(state_type: StateType, name: str | None, **fields: Any) -> State:
    details = fields.pop("state_details", None)
    detail_values = {key: fields.pop(key) for key in fields.keys() & _DETAIL_FIELDS}
    if details is None:
        details = StateDetails(**detail_values)
    else:
        # The caller's details object is filled in place, each value validated as
        # assignment validation would.
        for key, value in detail_values.items():
            StateDetails.__pydantic_validator__.validate_assignment(details, key, value)
    return State(type=state_type, name=name or "", state_details=details, **fields)


def Scheduled(
    scheduled_time: datetime | None = None, name: str = "Scheduled", **fields: Any
) -> State:  # noqa: N802
    """Build a Scheduled state due at `scheduled_time` (now when omitted)."""
    return _state(StateType.SCHEDULED, name, scheduled_time=scheduled_time, **fields)


def Late(scheduled_time: datetime | None = None, **fields: Any) -> State:  # noqa: N802
    return Scheduled(scheduled_time, name="Late", **fields)


def AwaitingRetry(scheduled_time: datetime | None = None, **fields: Any) -> State:  # noqa: N802
    return Scheduled(scheduled_time, name="AwaitingRetry", **fields)


def AwaitingConcurrencySlot(scheduled_time: datetime | None = None, **fields: Any) -> State:  # noqa: N802
    return Scheduled(scheduled_time, name="AwaitingConcurrencySlot", **fields)


def Resuming(scheduled_time: datetime | None = None, **fields: Any) -> State:  # noqa: N802
    return Scheduled(scheduled_time, name="Resuming", **fields)


def Pending(name: str = "Pending", **fields: Any) -> State:  # noqa: N802
    return _state(StateType.PENDING, name, **fields)


def Running(name: str = "Running", **fields: Any) -> State:  # noqa: N802
    return _state(StateType.RUNNING, name, **fields)


def Retrying(**fields: Any) -> State:  # noqa: N802
    return Running(name="Retrying", **fields)


def Rerunning(**fields: Any) -> State:  # noqa: N802
    return Running(name="Rerunning", **fields)


def Completed(name: str = "Completed", **fields: Any) -> State:  # noqa: N802
    return _state(StateType.COMPLETED, name, **fields)


def Cached(**fields: Any) -> State:  # noqa: N802
    return Completed(name="Cached", **fields)


def Failed(name: str = "Failed", **fields: Any) -> State:  # noqa: N802
    return _state(StateType.FAILED, name, **fields)


def TimedOut(**fields: Any) -> State:  # noqa: N802
    return Failed(name="TimedOut", **fields)


def Crashed(**fields: Any) -> State:  # noqa: N802
    return _state(StateType.CRASHED, "Crashed", **fields)


def Cancelling(**fields: Any) -> State:  # noqa: N802
    return _state(StateType.CANCELLING, "Cancelling", **fields)


def Cancelled(**fields: Any) -> State:  # noqa: N802
    return _state(StateType.CANCELLED, "Cancelled", **fields)


def Paused(  # noqa: N802
    pause_timeout: datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    name: str = "Paused",
    **fields: Any,
) -> State:
    return _state(
        StateType.PAUSED,
        name,
        pause_timeout=pause_timeout,
        pause_reschedule=reschedule,
        pause_key=pause_key,
        **fields,
    )


def Suspended(
    pause_timeout: datetime | None = None, pause_key: str | None = None, **fields: Any
) -> State:  # noqa: N802
    return Paused(pause_timeout, reschedule=True, pause_key=pause_key, name="Suspended", **fields)


def NotReady(
    pause_timeout: datetime | None = None, reschedule: bool = False, **fields: Any
) -> State:  # noqa: N802
    """Build the Paused state named NotReady, returned to a task whose flow run is paused."""
    return Paused(pause_timeout, reschedule=reschedule, name="NotReady", **fields)
