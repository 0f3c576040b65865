"""Global transforms: the run bookkeeping that every transition gets, forced ones included.

Each transform acts in its before-hook, after the policy's rules have decided, and
does nothing when a rule nullified the proposal. They keep the run snapshot's
denormalized state fields, clocks and counters in step with the state being written.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from policy.rule import BaseUniversalTransform
from policy.runs import FlowRun, TaskRun
from policy.states import StateType

RETRY_ORIGIN = "AwaitingRetry"

if TYPE_CHECKING:
    from policy.context import OrchestrationContext


class SetRunStateType(BaseUniversalTransform):
    """Copy the proposed state's type onto the run."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        context.run.state_type = context.proposed_state.type


class SetRunStateName(BaseUniversalTransform):
    """Copy the proposed state's name onto the run."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        context.run.state_name = context.proposed_state.name


class SetRunStateTimestamp(BaseUniversalTransform):
    """Copy the proposed state's timestamp onto the run."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        context.run.state_timestamp = context.proposed_state.timestamp


class SetStartTime(BaseUniversalTransform):
    """Record when the run first entered Running."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        proposed = context.proposed_state
        if proposed.type is StateType.RUNNING and context.run.start_time is None:
            context.run.start_time = proposed.timestamp


class SetEndTime(BaseUniversalTransform):
    """Record when the run first reached a final state; clear it when the run leaves one.

    A run that reaches a final state without ever running gets the same start time, so
    its run time reads as zero rather than unknown.
    """

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        run = context.run
        proposed = context.proposed_state
        initial = context.initial_state

        if initial is not None and initial.is_final() and not proposed.is_final():
            run.end_time = None

        if proposed.is_final() and run.end_time is None:
            run.end_time = proposed.timestamp
            if run.start_time is None:
                run.start_time = proposed.timestamp


class IncrementRunTime(BaseUniversalTransform):
    """Add the time spent in the Running state being left to the run's total run time."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        initial = context.initial_state
        if initial is not None and initial.type is StateType.RUNNING:
            elapsed = datetime.__sub__(context.proposed_state.timestamp, initial.timestamp)
            context.run.total_run_time += elapsed.total_seconds()


class SetExpectedStartTime(BaseUniversalTransform):
    """Fix the run's expected start time from its first state."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition() or context.run.expected_start_time is not None:
            return
        proposed = context.proposed_state
        if proposed.type is StateType.SCHEDULED:
            context.run.expected_start_time = proposed.state_details.scheduled_time
        else:
            context.run.expected_start_time = proposed.timestamp


class SetNextScheduledStartTime(BaseUniversalTransform):
    """Keep the run's next scheduled start time equal to its Scheduled state's time."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        initial = context.initial_state
        if initial is not None and initial.type is StateType.SCHEDULED:
            context.run.next_scheduled_start_time = None

        proposed = context.proposed_state
        if proposed.type is StateType.SCHEDULED:
            context.run.next_scheduled_start_time = proposed.state_details.scheduled_time


class UpdateStateDetails(BaseUniversalTransform):
    """Stamp the run's own ids on the proposed state's details, whatever the proposer sent."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        details = context.proposed_state.state_details
        run = context.run
        if isinstance(run, TaskRun):
            details.flow_run_id = run.flow_run_id
            details.task_run_id = run.id
        else:
            details.flow_run_id = run.id


class IncrementTaskRunCount(BaseUniversalTransform):
    """Count every entry of a task run into Running; retry rules compare it to `retries`."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        if context.proposed_state.type is StateType.RUNNING:
            context.run.run_count += 1


class KeepRetryOrigin(BaseUniversalTransform):
    """Keep the AwaitingRetry origin of a claimed run that goes back to Scheduled.

    A claim records the name of the Scheduled state it claimed. When a claimed retry
    is handed back or released to its queue, the new Scheduled state carries that
    origin, so the next claim records a retry and the run enters Running as Retrying.
    It runs on forced transitions too, because the service releases runs that way.
    """

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        initial = context.initial_state
        proposed = context.proposed_state
        if initial is None or not initial.is_pending() or not proposed.is_scheduled():
            return
        if initial.state_details.claimed_state_name != RETRY_ORIGIN:
            return
        if proposed.state_details.claimed_state_name is None:
            proposed.state_details.claimed_state_name = RETRY_ORIGIN


class UpdateSubflowStateDetails(BaseUniversalTransform):
    """Point a subflow's states at the task run that tracks it in the parent flow."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        run = context.run
        if isinstance(run, FlowRun) and run.parent_task_run_id is not None:
            context.proposed_state.state_details.task_run_id = run.parent_task_run_id


class IncrementFlowRunCount(BaseUniversalTransform):
    """Count every entry of a flow run into Running, except the Running that resumes a pause."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        run = context.run
        if context.proposed_state.type is not StateType.RUNNING:
            return
        if isinstance(run, FlowRun) and run.empirical_policy.resuming:
            return
        run.run_count += 1


class RemoveResumingIndicator(BaseUniversalTransform):
    """Clear the resuming mark once a resumed flow run runs again or finishes."""

    async def before_transition(self, context: OrchestrationContext) -> None:
        if self.nullified_transition():
            return
        run = context.run
        proposed = context.proposed_state
        if not isinstance(run, FlowRun) or not run.empirical_policy.resuming:
            return
        if proposed.type is StateType.RUNNING or proposed.is_final():
            run.empirical_policy.resuming = False


class UpdateSubflowParentTask(BaseUniversalTransform):
    """Mirror a subflow's validated state onto the task run that tracks it in the parent."""

    async def after_transition(self, context: OrchestrationContext) -> None:
        run = context.run
        validated = context.validated_state
        if self.nullified_transition() or validated is None:
            return
        if not isinstance(run, FlowRun) or run.parent_task_run_id is None:
            return
        updater = getattr(context, "subflow_parents", None)
        if updater is None:
            return

        mirrored = validated.fresh_copy(now=context.clock.now())
        mirrored.state_details.child_flow_run_id = run.id
        await updater.set_parent_task_state(run.parent_task_run_id, mirrored)


COMMON_TRANSFORMS = (
    SetRunStateType,
    SetRunStateName,
    SetRunStateTimestamp,
    SetStartTime,
    SetEndTime,
    IncrementRunTime,
    SetExpectedStartTime,
    SetNextScheduledStartTime,
    UpdateStateDetails,
)

GLOBAL_TASK_TRANSFORMS: tuple[type[BaseUniversalTransform], ...] = (
    *COMMON_TRANSFORMS,
    IncrementTaskRunCount,
    KeepRetryOrigin,
)

# NOTE: flow runs get no unique-timestamp transform, because states are ordered by a
# per-run sequence number in storage rather than by timestamp.
GLOBAL_FLOW_TRANSFORMS: tuple[type[BaseUniversalTransform], ...] = (
    *COMMON_TRANSFORMS,
    UpdateSubflowParentTask,
    UpdateSubflowStateDetails,
    IncrementFlowRunCount,
    RemoveResumingIndicator,
)
