"""Every orchestration rule, one concern per module, re-exported for the policies."""

from policy.rules.background import EnforceClaim, EnqueueScheduledTasks
from policy.rules.caching import CacheInsertion, CacheIsolation, CacheRetrieval
from policy.rules.common import (
    CopyScheduledTime,
    PreventDuplicateTransitions,
    PreventPendingTransitions,
    WaitForScheduledTime,
)
from policy.rules.concurrency import ReleaseTaskConcurrencySlots, SecureTaskConcurrencySlots
from policy.rules.flows import (
    BypassCancellingFlowRunsWithNoInfra,
    EnforceCancellingToCancelledTransition,
    EnsureOnlyScheduledFlowsMarkedLate,
    HandleFlowTerminalStateTransitions,
    HandlePausingFlows,
    HandleResumingPausedFlows,
    InstrumentFlowRunStateTransitions,
    PreventResultDataLoss,
    RetryFailedFlows,
)
from policy.rules.tasks import (
    CopyTaskParametersID,
    HandleTaskTerminalStateTransitions,
    PreventRunningTasksFromStoppedFlows,
    RenameReruns,
    RetryFailedTasks,
    UpdateFlowRunTrackerOnTasks,
)

__all__ = [
    "BypassCancellingFlowRunsWithNoInfra",
    "CacheInsertion",
    "CacheIsolation",
    "CacheRetrieval",
    "CopyScheduledTime",
    "CopyTaskParametersID",
    "EnforceCancellingToCancelledTransition",
    "EnforceClaim",
    "EnqueueScheduledTasks",
    "EnsureOnlyScheduledFlowsMarkedLate",
    "HandleFlowTerminalStateTransitions",
    "HandlePausingFlows",
    "HandleResumingPausedFlows",
    "HandleTaskTerminalStateTransitions",
    "InstrumentFlowRunStateTransitions",
    "PreventDuplicateTransitions",
    "PreventPendingTransitions",
    "PreventResultDataLoss",
    "PreventRunningTasksFromStoppedFlows",
    "ReleaseTaskConcurrencySlots",
    "RenameReruns",
    "RetryFailedFlows",
    "RetryFailedTasks",
    "SecureTaskConcurrencySlots",
    "UpdateFlowRunTrackerOnTasks",
    "WaitForScheduledTime",
]
