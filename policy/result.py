"""The result an orchestration returns to the proposer of a state."""

from __future__ import annotations

import enum

from pydantic import BaseModel

from policy.states import State


class SetStateStatus(enum.StrEnum):
    """Instruction to the proposer of a state about its next step."""

    ACCEPT = "ACCEPT"  # the proposed state was written as proposed (perhaps renamed)
    REJECT = "REJECT"  # another state was written, or the run stays in its current state
    WAIT = "WAIT"  # nothing was written; propose the same state again after the delay
    ABORT = "ABORT"  # nothing was written; stop orchestrating this run


class OrchestrationResult(BaseModel):
    """The status, the resulting state and the reason of one orchestration."""

    status: SetStateStatus
    # The validated state, or the run's current state when nothing was written (None
    # when the run has no state, or when validating the proposed state failed).
    state: State | None = None
    reason: str | None = None
    delay_seconds: float | None = None  # set for WAIT only
    rule: str | None = None  # class name of the rule that decided; None on a plain ACCEPT
