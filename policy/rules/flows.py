"""Rules of flow runs: terminal states, cancelling, lateness, pauses, retries and events."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from policy.context import FlowOrchestrationContext
from policy.rule import ALL, BaseOrchestrationRule, BaseUniversalTransform, states
from policy.states import TERMINAL_STATES, AwaitingRetry, Cancelled, Failed, State, StateType

LIVE_ONLY_STATES = frozenset({StateType.CANCELLING, StateType.PAUSED, StateType.CRASHED})


def _completed_with_result(state: State) -> bool:
    return state.is_completed() and isinstance(state.data, dict) and state.has_persisted_result()


class HandleFlowTerminalStateTransitions(BaseOrchestrationRule):
    """Guard flow runs leaving a final state.

    A final flow run cannot become Cancelling, Paused or Crashed (ABORT). One Completed
    with a persisted result keeps it against non-final proposals and against a
    Completed without a persisted result, but may move to another final state. It
    cannot be rescheduled without a deployment (ABORT). Leaving a final state for a
    non-final one clears the pause bookkeeping of the earlier run.
    """

    FROM_STATES = states(TERMINAL_STATES)
    TO_STATES = ALL

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.original_policy = None

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        self.original_policy = context.run.empirical_policy.model_copy(deep=True)

        if proposed_state.type in LIVE_ONLY_STATES:
            await self.abort_transition(
                f"Run is already in final state {initial_state.type.value}."
            )
            return

        if _completed_with_result(initial_state):
            loses_result = (
                proposed_state.is_completed() and not proposed_state.has_persisted_result()
            )
            if not proposed_state.is_final() or loses_result:
                await self.reject_transition(None, "Run is already COMPLETED.")
                return

        if proposed_state.is_scheduled() and context.run.deployment_id is None:
            await self.abort_transition("Cannot reschedule a run without an associated deployment.")
            return

        if not proposed_state.is_final():
            policy = context.run.empirical_policy
            policy.resuming = False
            policy.pause_keys = set()
            policy.retry_type = "reschedule" if proposed_state.is_scheduled() else None

    async def cleanup(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        context.run.empirical_policy = self.original_policy


class PreventResultDataLoss(BaseOrchestrationRule):
    """Keep a flow run's persisted result from a Completed state without one, even if forced."""

    FROM_STATES = states(TERMINAL_STATES)
    TO_STATES = states(TERMINAL_STATES)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        if not _completed_with_result(initial_state):
            return
        if proposed_state.is_completed() and not proposed_state.has_persisted_result():
            await self.reject_transition(None, "This run would lose its persisted result.")


class EnforceCancellingToCancelledTransition(BaseOrchestrationRule):
    """Keep a Cancelling or Cancelled flow run in place unless it becomes Cancelled."""

    FROM_STATES = states(StateType.CANCELLED, StateType.CANCELLING)
    TO_STATES = frozenset(ALL - {StateType.CANCELLED})

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        await self.reject_transition(None, "A cancelling flow run can only move to Cancelled.")


class BypassCancellingFlowRunsWithNoInfra(BaseOrchestrationRule):
    """Cancel at once a flow run that has no infrastructure to tear down.

    A Scheduled run without an infrastructure process, a Scheduled run named Resuming
    (a suspended run not yet restarted) and a Suspended run go straight to Cancelled
    instead of Cancelling.
    """

    FROM_STATES = states(StateType.SCHEDULED, StateType.PAUSED)
    TO_STATES = states(StateType.CANCELLING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        now = context.clock.now()
        no_infrastructure = initial_state.is_scheduled() and not context.run.infrastructure_pid
        if no_infrastructure or initial_state.name == "Resuming":
            await self.reject_transition(
                Cancelled(timestamp=now), "Scheduled flow run has no infrastructure to terminate."
            )
        elif initial_state.is_paused() and initial_state.state_details.pause_reschedule:
            await self.reject_transition(
                Cancelled(timestamp=now), "Suspended flow run has no infrastructure to terminate."
            )


class EnsureOnlyScheduledFlowsMarkedLate(BaseOrchestrationRule):
    """Allow the Scheduled state named Late only from a Scheduled state not already Late."""

    FROM_STATES = ALL
    TO_STATES = states(StateType.SCHEDULED)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        if proposed_state.name != "Late":
            return
        if initial_state is None or not initial_state.is_scheduled():
            await self.reject_transition(None, "Only scheduled flow runs can be marked late.")
        elif initial_state.name == "Late":
            await self.reject_transition(None, "This flow run is already marked late.")


class HandlePausingFlows(BaseOrchestrationRule):
    """Govern a flow run entering Paused (in process) or Suspended (infrastructure torn down).

    Only a Running run can pause, and each pause key fires once per run: the key is
    recorded when the pause is accepted. A suspended run must have a deployment to
    restart from and cannot be a subflow.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.PAUSED)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.pause_key: str | None = None

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        verb = "suspend" if proposed_state.name == "Suspended" else "pause"

        if initial_state is None:
            await self.abort_transition(f"Cannot {verb} a flow run with no state.")
            return
        if not initial_state.is_running():
            await self.reject_transition(None, f"Cannot {verb} a flow run that is not Running.")
            return

        pause_key = proposed_state.state_details.pause_key or str(uuid4())
        if pause_key in context.run.empirical_policy.pause_keys:
            await self.reject_transition(None, f"This {verb} has already fired.")
            return

        if proposed_state.state_details.pause_reschedule:
            if context.run.parent_task_run_id is not None:
                await self.abort_transition(f"Cannot {verb} subflows.")
                return
            if context.run.deployment_id is None:
                await self.abort_transition(f"Cannot {verb} flow runs without a deployment.")
                return

        self.pause_key = pause_key

    async def after_transition(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        context.run.empirical_policy.pause_keys = {
            *context.run.empirical_policy.pause_keys,
            self.pause_key,
        }


class HandleResumingPausedFlows(BaseOrchestrationRule):
    """Govern a flow run leaving Paused.

    It may only move to Running, Scheduled or a final state. A suspended run needs a
    deployment to restart from. Past its pause timeout it is failed instead. An
    accepted resumption marks the run as resuming, so its next Running is not counted
    as a new attempt.
    """

    FROM_STATES = states(StateType.PAUSED)
    TO_STATES = ALL

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        if not (
            proposed_state.is_running()
            or proposed_state.is_scheduled()
            or proposed_state.is_final()
        ):
            await self.reject_transition(
                None,
                f"A flow run cannot move from {initial_state.type.value} to "
                f"{proposed_state.type.value}.",
            )
            return

        details = initial_state.state_details
        if details.pause_reschedule and context.run.deployment_id is None:
            await self.reject_transition(
                None,
                f"Cannot reschedule a {proposed_state.name.lower()} flow run without a deployment.",
            )
            return

        now = context.clock.now()
        if details.pause_timeout is not None and details.pause_timeout < now:
            # The proposal is never Paused here, so name the pause after the state left.
            verb = "suspend" if details.pause_reschedule else "pause"
            timed_out = Failed(
                message=f"The flow was {proposed_state.name.lower()} and never resumed.",
                timestamp=now,
            )
            await self.reject_transition(
                timed_out, f"The flow run {verb} has timed out and can no longer resume."
            )

    async def after_transition(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        context.run.empirical_policy.resuming = True


class RetryFailedFlows(BaseOrchestrationRule):
    """Turn a flow run's Failed into AwaitingRetry while it has retries left.

    The retry is due after `retry_delay` seconds, with no jitter, and clears the pause
    bookkeeping of the failed attempt.
    """

    FROM_STATES = states(StateType.RUNNING)
    TO_STATES = states(StateType.FAILED)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: FlowOrchestrationContext,
    ) -> None:
        policy = context.run.empirical_policy
        if policy.retries is None or context.run.run_count > policy.retries:
            policy.retry_type = None
            return

        policy.resuming = False
        policy.pause_keys = set()
        policy.retry_type = "in_process"

        now = context.clock.now()
        retry_state = AwaitingRetry(
            scheduled_time=now + timedelta(seconds=policy.retry_delay or 0),
            timestamp=now,
            message=proposed_state.message,
            data=proposed_state.data,
        )
        await self.reject_transition(retry_state, "Retrying")


class InstrumentFlowRunStateTransitions(BaseUniversalTransform):
    """Publish a state-change event for every state written to a flow run."""

    async def after_transition(self, context: FlowOrchestrationContext) -> None:
        if self.nullified_transition():
            return
        validated = context.validated_state
        initial = context.initial_state
        intended_from, intended_to = context.intended_transition
        context.events.publish(
            {
                "event": f"flow-run.{validated.name}",
                "run_id": str(context.run.id),
                "state_id": str(validated.id),
                "state_type": validated.type.value,
                "state_name": validated.name,
                "timestamp": validated.timestamp.isoformat(),
                "initial_state_type": initial.type.value if initial else None,
                "intended": {
                    "from": intended_from.value if intended_from else None,
                    "to": intended_to.value if intended_to else None,
                },
            }
        )
