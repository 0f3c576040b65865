"""Rules of task runs: terminal states, parent flow runs, parameters, retries and names."""

from __future__ import annotations

from datetime import timedelta

from policy.context import TaskOrchestrationContext
from policy.retries import base_retry_delay, jittered_delay
from policy.rule import ALL, BaseOrchestrationRule, states
from policy.states import TERMINAL_STATES, AwaitingRetry, Paused, State, StateType

# A final run may not be marked as any of these: they describe a run that is still alive.
LIVE_ONLY_STATES = frozenset({StateType.CANCELLING, StateType.PAUSED, StateType.CRASHED})


class HandleTaskTerminalStateTransitions(BaseOrchestrationRule):
    """Guard task runs leaving a final state.

    A final run cannot become Cancelling, Paused or Crashed (ABORT). A run Completed
    with a persisted result keeps it: any other proposal gets the current state back.
    A run leaving a final state for a non-final one is a manual rerun, so its run count
    starts again from 0, which renews its retries. A task run whose flow run is on a
    newer attempt than the one it last ran in enters Running named Retrying.
    """

    FROM_STATES = states(TERMINAL_STATES)
    TO_STATES = ALL

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.original_run_count: int | None = None

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        self.original_run_count = context.run.run_count

        if proposed_state.type in LIVE_ONLY_STATES:
            await self.abort_transition(f"Run is already {initial_state.type.value}.")
            return

        if initial_state.is_completed() and initial_state.has_persisted_result():
            await self.reject_transition(None, "This run is already completed.")
            return

        if not proposed_state.is_final():
            context.run.run_count = 0

        if proposed_state.is_running():
            flow_run = await context.flow_run()
            if flow_run is not None and context.run.flow_run_run_count < flow_run.run_count:
                await self.rename_state("Retrying")

    async def cleanup(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        context.run.run_count = self.original_run_count


class PreventRunningTasksFromStoppedFlows(BaseOrchestrationRule):
    """Let a task run of a flow enter Running only while its flow run is Running.

    A paused flow run makes the task Paused named NotReady, carrying the flow's pause
    timeout, so the task waits for the flow to resume; any other flow state aborts.
    Runs outside a flow pass.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        flow_run = await context.flow_run()
        if flow_run is None:
            return

        flow_state = flow_run.state
        if flow_state is None or flow_state.type not in {StateType.RUNNING, StateType.PAUSED}:
            await self.abort_transition(
                "The enclosing flow run must be Running to start a task run."
            )
            return

        if flow_state.type is StateType.PAUSED:
            not_ready = Paused(
                pause_timeout=flow_state.state_details.pause_timeout,
                reschedule=flow_state.state_details.pause_reschedule,
                name="NotReady",
                timestamp=context.clock.now(),
            )
            await self.reject_transition(
                not_ready,
                f"The flow run {flow_run.id} is paused; task runs can start after it resumes.",
            )


class CopyTaskParametersID(BaseOrchestrationRule):
    """Carry the stored parameters' id forward from Scheduled to Pending and Pending to Running."""

    FROM_STATES = states(StateType.SCHEDULED, StateType.PENDING)
    TO_STATES = states(StateType.PENDING, StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if proposed_state.state_details.task_parameters_id is None:
            proposed_state.state_details.task_parameters_id = (
                initial_state.state_details.task_parameters_id
            )


class RetryFailedTasks(BaseOrchestrationRule):
    """Turn Failed into AwaitingRetry while the run has retries left.

    A run with `retries` set may run `retries + 1` times: while its run count (which
    includes the attempt that just failed) does not exceed `retries`, Failed is
    rejected into AwaitingRetry, due after the retry delay with its jitter. A Failed
    state marked `retriable=False` (by a retry condition, or a worker giving up) is
    accepted. The AwaitingRetry state keeps the failure's message and data.
    """

    FROM_STATES = states(StateType.RUNNING)
    TO_STATES = states(StateType.FAILED)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        retry_policy = context.run.empirical_policy
        attempt = context.run.run_count

        if proposed_state.state_details.retriable is False:
            return
        if retry_policy.retries is None or attempt > retry_policy.retries:
            return

        base_delay = base_retry_delay(retry_policy.retry_delay, attempt)
        delay = jittered_delay(base_delay, retry_policy.retry_jitter_factor)
        now = context.clock.now()
        retry_state = AwaitingRetry(
            scheduled_time=now + timedelta(seconds=delay),
            timestamp=now,
            message=proposed_state.message,
            data=proposed_state.data,
        )
        await self.reject_transition(retry_state, "Retrying")


class RenameReruns(BaseOrchestrationRule):
    """Name Running Retrying or Rerunning when the run has run before.

    Retrying is for a run that comes from AwaitingRetry: either directly, or through a
    Pending claim whose details record that it claimed an AwaitingRetry state. Any
    other run with a run count above 0 is Rerunning.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if context.run.run_count == 0:
            return
        if _origin_name(initial_state) == "AwaitingRetry":
            await self.rename_state("Retrying")
        else:
            await self.rename_state("Rerunning")


def _origin_name(initial_state: State | None) -> str | None:
    if initial_state is None:
        return None
    if initial_state.is_pending() and initial_state.state_details.claimed_state_name:
        return initial_state.state_details.claimed_state_name
    return initial_state.name


class UpdateFlowRunTrackerOnTasks(BaseOrchestrationRule):
    """Record which attempt of its flow run a task run entered Running in."""

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    async def after_transition(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if context.run.flow_run_id is None:
            return
        flow_run = await context.flow_run()
        if flow_run is None:
            raise LookupError(
                f"flow run {context.run.flow_run_id} of task run {context.run.id} was not found; "
                "it may have been deleted"
            )
        context.run.flow_run_run_count = flow_run.run_count
