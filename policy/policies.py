"""Policies: ordered lists of rules, and the choice of a policy for a stored run.

A policy runs its rules in list order before validation and in reverse order after
it. The four reference policies keep the rule lists of the server they are modelled
on; taskgate's defaults for task runs are variants under their own names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policy.rule import BaseOrchestrationRule, BaseUniversalTransform
from policy.rules import (
    BypassCancellingFlowRunsWithNoInfra,
    CacheInsertion,
    CacheIsolation,
    CacheRetrieval,
    CopyScheduledTime,
    CopyTaskParametersID,
    EnforceCancellingToCancelledTransition,
    EnforceClaim,
    EnqueueScheduledTasks,
    EnsureOnlyScheduledFlowsMarkedLate,
    HandleFlowTerminalStateTransitions,
    HandlePausingFlows,
    HandleResumingPausedFlows,
    HandleTaskTerminalStateTransitions,
    InstrumentFlowRunStateTransitions,
    PreventDuplicateTransitions,
    PreventPendingTransitions,
    PreventResultDataLoss,
    PreventRunningTasksFromStoppedFlows,
    ReleaseTaskConcurrencySlots,
    RenameReruns,
    RetryFailedFlows,
    RetryFailedTasks,
    SecureTaskConcurrencySlots,
    UpdateFlowRunTrackerOnTasks,
    WaitForScheduledTime,
)
from policy.runs import TaskRun

RuleClass = type[BaseOrchestrationRule] | type[BaseUniversalTransform]
PolicyVariant = Literal["taskgate", "reference"]


@dataclass(frozen=True)
class OrchestrationPolicy:
    """A named, ordered list of rules."""

    name: str
    rules: tuple[RuleClass, ...]

    def rule_names(self) -> list[str]:
        return [rule.__name__ for rule in self.rules]


CoreTaskPolicy = OrchestrationPolicy(
    "CoreTaskPolicy",
    (
        CacheRetrieval,
        HandleTaskTerminalStateTransitions,
        PreventRunningTasksFromStoppedFlows,
        # Cache look-up comes first, so a run with a cached result never needs a slot.
        SecureTaskConcurrencySlots,
        CopyScheduledTime,
        WaitForScheduledTime,
        RetryFailedTasks,
        RenameReruns,
        UpdateFlowRunTrackerOnTasks,
        CacheInsertion,
        ReleaseTaskConcurrencySlots,
    ),
)

ClientSideTaskOrchestrationPolicy = OrchestrationPolicy(
    "ClientSideTaskOrchestrationPolicy",
    (
        CacheRetrieval,
        HandleTaskTerminalStateTransitions,
        PreventRunningTasksFromStoppedFlows,
        CopyScheduledTime,
        WaitForScheduledTime,
        RetryFailedTasks,
        RenameReruns,
        UpdateFlowRunTrackerOnTasks,
        CacheInsertion,
        ReleaseTaskConcurrencySlots,
    ),
)

BackgroundTaskPolicy = OrchestrationPolicy(
    "BackgroundTaskPolicy",
    (
        PreventPendingTransitions,
        CacheRetrieval,
        HandleTaskTerminalStateTransitions,
        CopyScheduledTime,
        CopyTaskParametersID,
        WaitForScheduledTime,
        RetryFailedTasks,
        RenameReruns,
        UpdateFlowRunTrackerOnTasks,
        CacheInsertion,
        ReleaseTaskConcurrencySlots,
        EnqueueScheduledTasks,
    ),
)

CoreFlowPolicy = OrchestrationPolicy(
    "CoreFlowPolicy",
    (
        PreventDuplicateTransitions,
        HandleFlowTerminalStateTransitions,
        EnforceCancellingToCancelledTransition,
        BypassCancellingFlowRunsWithNoInfra,
        PreventPendingTransitions,
        EnsureOnlyScheduledFlowsMarkedLate,
        HandlePausingFlows,
        HandleResumingPausedFlows,
        CopyScheduledTime,
        WaitForScheduledTime,
        RetryFailedFlows,
        InstrumentFlowRunStateTransitions,
    ),
)

# Forced transitions (an operator's explicit override) keep only the bookkeeping that
# must never be skipped. A forced Scheduled state of a background run is queued like
# any other, so it does not wait for the reconciler to find it.
MinimalTaskPolicy = OrchestrationPolicy(
    "MinimalTaskPolicy", (ReleaseTaskConcurrencySlots, EnqueueScheduledTasks)
)

MinimalFlowPolicy = OrchestrationPolicy(
    "MinimalFlowPolicy",
    (
        PreventResultDataLoss,
        BypassCancellingFlowRunsWithNoInfra,
        InstrumentFlowRunStateTransitions,
    ),
)

# taskgate's default for background runs: the reference list plus transition-id
# de-duplication, the claim check, cache isolation and tag concurrency slots, because
# users of every task queue expect a tag limit to bound queued work too.
TaskgateBackgroundTaskPolicy = OrchestrationPolicy(
    "TaskgateBackgroundTaskPolicy",
    (
        PreventDuplicateTransitions,
        EnforceClaim,
        PreventPendingTransitions,
        CacheRetrieval,
        HandleTaskTerminalStateTransitions,
        CacheIsolation,
        SecureTaskConcurrencySlots,
        CopyScheduledTime,
        CopyTaskParametersID,
        WaitForScheduledTime,
        RetryFailedTasks,
        RenameReruns,
        UpdateFlowRunTrackerOnTasks,
        CacheInsertion,
        ReleaseTaskConcurrencySlots,
        EnqueueScheduledTasks,
    ),
)

# taskgate's default for task runs inside a flow run: the core list behind
# de-duplication and the claim check.
TaskgateCoreTaskPolicy = OrchestrationPolicy(
    "TaskgateCoreTaskPolicy",
    (PreventDuplicateTransitions, EnforceClaim, *CoreTaskPolicy.rules),
)


def select_task_policy(
    run: TaskRun, *, force: bool, variant: PolicyVariant = "taskgate"
) -> OrchestrationPolicy:
    """Choose the policy for a proposal on the stored task run.

    The choice reads only the stored run (`is_background`) and the caller's `force`,
    never a flag on the proposed state. `variant="reference"` selects the reference
    policies instead of taskgate's variants.
    """
    if force:
        return MinimalTaskPolicy
    if variant not in ("taskgate", "reference"):
        raise ValueError(f"policy variant {variant!r} is invalid; use 'taskgate' or 'reference'")
    if run.is_background:
        return TaskgateBackgroundTaskPolicy if variant == "taskgate" else BackgroundTaskPolicy
    return TaskgateCoreTaskPolicy if variant == "taskgate" else CoreTaskPolicy


def select_flow_policy(*, force: bool) -> OrchestrationPolicy:
    """Choose the policy for a proposal on a flow run."""
    return MinimalFlowPolicy if force else CoreFlowPolicy
