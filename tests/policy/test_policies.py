"""Each policy's rule list, written out, and the choice of a policy for a run."""

from __future__ import annotations

from uuid import uuid4

import pytest

from policy.policies import (
    BackgroundTaskPolicy,
    ClientSideTaskOrchestrationPolicy,
    CoreFlowPolicy,
    CoreTaskPolicy,
    MinimalFlowPolicy,
    MinimalTaskPolicy,
    TaskgateBackgroundTaskPolicy,
    TaskgateCoreTaskPolicy,
    select_flow_policy,
    select_task_policy,
)
from policy.states import Scheduled
from tests.policy.harness import T0, background_run, task_run


def test_core_flow_policy_rules():
    assert CoreFlowPolicy.rule_names() == [
        "PreventDuplicateTransitions",
        "HandleFlowTerminalStateTransitions",
        "EnforceCancellingToCancelledTransition",
        "BypassCancellingFlowRunsWithNoInfra",
        "PreventPendingTransitions",
        "EnsureOnlyScheduledFlowsMarkedLate",
        "HandlePausingFlows",
        "HandleResumingPausedFlows",
        "CopyScheduledTime",
        "WaitForScheduledTime",
        "RetryFailedFlows",
        "InstrumentFlowRunStateTransitions",
    ]


def test_core_task_policy_rules():
    assert CoreTaskPolicy.rule_names() == [
        "CacheRetrieval",
        "HandleTaskTerminalStateTransitions",
        "PreventRunningTasksFromStoppedFlows",
        "SecureTaskConcurrencySlots",
        "CopyScheduledTime",
        "WaitForScheduledTime",
        "RetryFailedTasks",
        "RenameReruns",
        "UpdateFlowRunTrackerOnTasks",
        "CacheInsertion",
        "ReleaseTaskConcurrencySlots",
    ]


def test_client_side_task_policy_rules():
    assert ClientSideTaskOrchestrationPolicy.rule_names() == [
        "CacheRetrieval",
        "HandleTaskTerminalStateTransitions",
        "PreventRunningTasksFromStoppedFlows",
        "CopyScheduledTime",
        "WaitForScheduledTime",
        "RetryFailedTasks",
        "RenameReruns",
        "UpdateFlowRunTrackerOnTasks",
        "CacheInsertion",
        "ReleaseTaskConcurrencySlots",
    ]


def test_background_task_policy_rules():
    assert BackgroundTaskPolicy.rule_names() == [
        "PreventPendingTransitions",
        "CacheRetrieval",
        "HandleTaskTerminalStateTransitions",
        "CopyScheduledTime",
        "CopyTaskParametersID",
        "WaitForScheduledTime",
        "RetryFailedTasks",
        "RenameReruns",
        "UpdateFlowRunTrackerOnTasks",
        "CacheInsertion",
        "ReleaseTaskConcurrencySlots",
        "EnqueueScheduledTasks",
    ]


def test_minimal_policies_rules():
    assert MinimalTaskPolicy.rule_names() == [
        "ReleaseTaskConcurrencySlots",
        "EnqueueScheduledTasks",
    ]
    assert MinimalFlowPolicy.rule_names() == [
        "PreventResultDataLoss",
        "BypassCancellingFlowRunsWithNoInfra",
        "InstrumentFlowRunStateTransitions",
    ]


def test_taskgate_background_policy_rules():
    assert TaskgateBackgroundTaskPolicy.rule_names() == [
        "PreventDuplicateTransitions",
        "EnforceClaim",
        "PreventPendingTransitions",
        "CacheRetrieval",
        "HandleTaskTerminalStateTransitions",
        "CacheIsolation",
        "SecureTaskConcurrencySlots",
        "CopyScheduledTime",
        "CopyTaskParametersID",
        "WaitForScheduledTime",
        "RetryFailedTasks",
        "RenameReruns",
        "UpdateFlowRunTrackerOnTasks",
        "CacheInsertion",
        "ReleaseTaskConcurrencySlots",
        "EnqueueScheduledTasks",
    ]


def test_taskgate_core_task_policy_rules():
    assert TaskgateCoreTaskPolicy.rule_names() == [
        "PreventDuplicateTransitions",
        "EnforceClaim",
        "CacheRetrieval",
        "HandleTaskTerminalStateTransitions",
        "PreventRunningTasksFromStoppedFlows",
        "SecureTaskConcurrencySlots",
        "CopyScheduledTime",
        "WaitForScheduledTime",
        "RetryFailedTasks",
        "RenameReruns",
        "UpdateFlowRunTrackerOnTasks",
        "CacheInsertion",
        "ReleaseTaskConcurrencySlots",
    ]


@pytest.mark.parametrize(
    ("is_background", "variant", "expected"),
    [
        (True, "taskgate", TaskgateBackgroundTaskPolicy),
        (True, "reference", BackgroundTaskPolicy),
        (False, "taskgate", TaskgateCoreTaskPolicy),
        (False, "reference", CoreTaskPolicy),
    ],
)
def test_task_policy_follows_stored_run(is_background, variant, expected):
    run = task_run(is_background=is_background, flow_run_id=None if is_background else uuid4())

    assert select_task_policy(run, force=False, variant=variant) is expected


def test_forced_task_uses_minimal_policy():
    assert select_task_policy(background_run(), force=True, variant="taskgate") is MinimalTaskPolicy


def test_deferred_proposal_does_not_pick_background_policy():
    run = task_run(flow_run_id=uuid4())
    run.state = Scheduled(T0, deferred=True)

    assert select_task_policy(run, force=False, variant="taskgate") is TaskgateCoreTaskPolicy


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="variant"):
        select_task_policy(task_run(), force=False, variant="newest")


def test_flow_policy_choice():
    assert select_flow_policy(force=False) is CoreFlowPolicy
    assert select_flow_policy(force=True) is MinimalFlowPolicy
