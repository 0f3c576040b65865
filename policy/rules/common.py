"""Rules that task runs and flow runs share: duplicates, claims of Pending, start times."""

from __future__ import annotations

from datetime import datetime, timedelta

from policy.context import OrchestrationContext
from policy.rule import ALL, BaseOrchestrationRule, states
from policy.states import State, StateType

MICROSECONDS_PER_SECOND = 1_000_000


class PreventDuplicateTransitions(BaseOrchestrationRule):
    """Keep the current state when a proposal repeats the transition that wrote it.

    A proposer stamps each request with a transition id and resends the same id after a
    lost reply; the resend finds the state it already wrote and gets it back.
    """

    FROM_STATES = ALL
    TO_STATES = ALL

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        if initial_state is None or proposed_state is None:
            return
        current_id = initial_state.state_details.transition_id
        proposed_id = proposed_state.state_details.transition_id
        if current_id is not None and current_id == proposed_id:
            await self.reject_transition(None, "This run has already made this state transition.")


class PreventPendingTransitions(BaseOrchestrationRule):
    """Abort a move to Pending from a state that means the run was already submitted.

    Entering Pending is how a worker claims a run, so the first claimer wins and any
    later one (from Pending, Running, Cancelling or Cancelled) is aborted. A Pending run
    may move to a differently named Pending sub-state, which keeps the scheduled time
    and the deployment concurrency lease.
    """

    FROM_STATES = states(
        StateType.PENDING, StateType.CANCELLING, StateType.RUNNING, StateType.CANCELLED
    )
    TO_STATES = states(StateType.PENDING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        is_sub_state = (
            initial_state.type is StateType.PENDING
            and proposed_state.name != initial_state.name
            and proposed_state.name != "Pending"
        )
        if is_sub_state:
            initial_details = initial_state.state_details
            proposed_state.state_details.scheduled_time = initial_details.scheduled_time
            proposed_state.state_details.deployment_concurrency_lease_id = (
                initial_details.deployment_concurrency_lease_id
            )
            return

        await self.abort_transition(
            f"This run is in a {initial_state.type.value} state and cannot move to a PENDING state."
        )


class CopyScheduledTime(BaseOrchestrationRule):
    """Carry the scheduled time from Scheduled into Pending unless the proposal sets one."""

    FROM_STATES = states(StateType.SCHEDULED)
    TO_STATES = states(StateType.PENDING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        if proposed_state.state_details.scheduled_time is None:
            proposed_state.state_details.scheduled_time = initial_state.state_details.scheduled_time


class WaitForScheduledTime(BaseOrchestrationRule):
    """Return WAIT to a run that proposes Running before its scheduled time.

    The delay is whole seconds: the whole seconds still to go, plus one when the rest
    exceeds half a second. So a run due in 0.5 s or less starts at once, one due in
    0.6 s waits 1 s, and one due in 1.5 s waits 1 s.
    """

    FROM_STATES = states(StateType.SCHEDULED, StateType.PENDING)
    TO_STATES = states(StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        scheduled_time = initial_state.state_details.scheduled_time
        if scheduled_time is None:
            return

        # Plain datetime subtraction returns a timedelta; pendulum's would build a
        # much slower Interval.
        remaining = datetime.__sub__(scheduled_time, context.clock.now())
        delay_seconds = rounded_delay_seconds(remaining)
        if delay_seconds > 0:
            await self.delay_transition(delay_seconds, "Scheduled time is in the future.")


def rounded_delay_seconds(remaining: timedelta) -> int:
    """Round a remaining time to whole seconds, rounding a half second down."""
    microseconds = remaining // timedelta(microseconds=1)
    whole_seconds, rest = divmod(microseconds, MICROSECONDS_PER_SECOND)
    return whole_seconds + (1 if rest > MICROSECONDS_PER_SECOND // 2 else 0)
