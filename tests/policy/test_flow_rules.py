"""Flow-run rules and the flow policies."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from policy.policies import CoreFlowPolicy, MinimalFlowPolicy, OrchestrationPolicy
from policy.result import SetStateStatus
from policy.rules import (
    BypassCancellingFlowRunsWithNoInfra,
    EnforceCancellingToCancelledTransition,
    EnsureOnlyScheduledFlowsMarkedLate,
    HandleFlowTerminalStateTransitions,
    HandlePausingFlows,
    HandleResumingPausedFlows,
    RetryFailedFlows,
)
from policy.runs import FlowRun, FlowRunPolicy
from policy.states import (
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Resuming,
    Running,
    Scheduled,
    StateType,
    Suspended,
)
from tests.policy.harness import T0, Bench

PERSISTED = {"type": "result", "value": 1}


def only(rule) -> OrchestrationPolicy:
    return OrchestrationPolicy(rule.__name__, (rule,))


def flow_run(**fields) -> FlowRun:
    fields.setdefault("id", uuid4())
    return FlowRun(**fields)


# Final states


@pytest.mark.parametrize("proposed", [Cancelling, Paused, Crashed])
async def test_final_flow_cannot_look_alive(proposed):
    bench = Bench()
    run = flow_run()
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose_flow(
        run, proposed(timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ABORT


async def test_completed_flow_result_kept_from_rerun():
    bench = Bench()
    run = flow_run(deployment_id=uuid4())
    current = bench.place(run, Completed(timestamp=T0, data=PERSISTED))

    result = await bench.propose_flow(
        run, Running(timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.id == current.id


async def test_completed_flow_result_kept_from_unpersisted():
    bench = Bench()
    run = flow_run()
    bench.place(run, Completed(timestamp=T0, data=PERSISTED))

    result = await bench.propose_flow(
        run, Completed(timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.REJECT


async def test_completed_flow_may_become_failed():
    bench = Bench()
    run = flow_run()
    bench.place(run, Completed(timestamp=T0, data=PERSISTED))

    result = await bench.propose_flow(
        run, Failed(timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_reschedule_needs_deployment():
    bench = Bench()
    run = flow_run()
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose_flow(
        run, Scheduled(T0, timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ABORT
    assert "deployment" in result.reason


async def test_rerun_forgets_pause_bookkeeping():
    bench = Bench()
    policy = FlowRunPolicy(pause_keys={"a"}, resuming=True)
    run = flow_run(deployment_id=uuid4(), empirical_policy=policy)
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose_flow(
        run, Scheduled(T0, timestamp=T0), only(HandleFlowTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert run.empirical_policy.pause_keys == set()
    assert run.empirical_policy.resuming is False
    assert run.empirical_policy.retry_type == "reschedule"


async def test_fizzled_rerun_restores_flow_policy():
    bench = Bench()
    run = flow_run(empirical_policy=FlowRunPolicy(pause_keys={"a"}))
    bench.place(run, Failed(timestamp=T0))

    class AbortAll(HandleFlowTerminalStateTransitions):
        async def before_transition(self, initial_state, proposed_state, context):
            await self.abort_transition("stop")

    policy = OrchestrationPolicy("Test", (HandleFlowTerminalStateTransitions, AbortAll))
    await bench.propose_flow(run, Running(timestamp=T0), policy)

    assert run.empirical_policy.pause_keys == {"a"}


# Cancelling


@pytest.mark.parametrize("proposed", [Running, Completed, Failed, Scheduled, Pending])
async def test_cancelling_flow_only_becomes_cancelled(proposed):
    bench = Bench()
    run = flow_run()
    current = bench.place(run, Cancelling(timestamp=T0))

    result = await bench.propose_flow(
        run, proposed(timestamp=T0), only(EnforceCancellingToCancelledTransition)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.id == current.id


async def test_cancelling_flow_becomes_cancelled():
    bench = Bench()
    run = flow_run()
    bench.place(run, Cancelling(timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelled(timestamp=T0), only(EnforceCancellingToCancelledTransition)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_cancelled_flow_stays_cancelled():
    bench = Bench()
    run = flow_run()
    bench.place(run, Cancelled(timestamp=T0))

    result = await bench.propose_flow(
        run, Running(timestamp=T0), only(EnforceCancellingToCancelledTransition)
    )

    assert result.status is SetStateStatus.REJECT


async def test_scheduled_flow_without_infra_is_cancelled():
    bench = Bench()
    run = flow_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelling(timestamp=T0), only(BypassCancellingFlowRunsWithNoInfra)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.type is StateType.CANCELLED


async def test_resuming_flow_is_cancelled():
    bench = Bench()
    run = flow_run(infrastructure_pid="4242")
    bench.place(run, Resuming(T0, timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelling(timestamp=T0), only(BypassCancellingFlowRunsWithNoInfra)
    )

    assert result.state.type is StateType.CANCELLED


async def test_scheduled_flow_with_infra_is_cancelling():
    bench = Bench()
    run = flow_run(infrastructure_pid="4242")
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelling(timestamp=T0), only(BypassCancellingFlowRunsWithNoInfra)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.type is StateType.CANCELLING


async def test_suspended_flow_is_cancelled():
    bench = Bench()
    run = flow_run()
    bench.place(run, Suspended(timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelling(timestamp=T0), only(BypassCancellingFlowRunsWithNoInfra)
    )

    assert result.state.type is StateType.CANCELLED
    assert "Suspended" in result.reason


async def test_paused_flow_is_cancelling():
    bench = Bench()
    run = flow_run()
    bench.place(run, Paused(timestamp=T0))

    result = await bench.propose_flow(
        run, Cancelling(timestamp=T0), only(BypassCancellingFlowRunsWithNoInfra)
    )

    assert result.status is SetStateStatus.ACCEPT


# Lateness


async def test_scheduled_flow_can_be_marked_late():
    bench = Bench()
    run = flow_run()
    bench.place(run, Scheduled(T0, timestamp=T0))

    result = await bench.propose_flow(
        run, Late(T0, timestamp=T0), only(EnsureOnlyScheduledFlowsMarkedLate)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_late_flow_is_not_marked_again():
    bench = Bench()
    run = flow_run()
    bench.place(run, Late(T0, timestamp=T0))

    result = await bench.propose_flow(
        run, Late(T0, timestamp=T0), only(EnsureOnlyScheduledFlowsMarkedLate)
    )

    assert result.status is SetStateStatus.REJECT


async def test_running_flow_is_not_marked_late():
    bench = Bench()
    run = flow_run()
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Late(T0, timestamp=T0), only(EnsureOnlyScheduledFlowsMarkedLate)
    )

    assert result.status is SetStateStatus.REJECT


async def test_plain_scheduled_is_not_checked():
    bench = Bench()
    run = flow_run()
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Scheduled(T0, timestamp=T0), only(EnsureOnlyScheduledFlowsMarkedLate)
    )

    assert result.status is SetStateStatus.ACCEPT


# Pausing


async def test_pause_without_state_aborts():
    bench = Bench()
    run = flow_run()

    result = await bench.propose_flow(run, Paused(timestamp=T0), only(HandlePausingFlows))

    assert result.status is SetStateStatus.ABORT
    assert run.empirical_policy.pause_keys == set()


async def test_pause_of_non_running_flow_is_rejected():
    bench = Bench()
    run = flow_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose_flow(run, Paused(timestamp=T0), only(HandlePausingFlows))

    assert result.status is SetStateStatus.REJECT
    assert run.empirical_policy.pause_keys == set()


async def test_accepted_pause_records_key():
    bench = Bench()
    run = flow_run()
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Paused(timestamp=T0, pause_key="step-1"), only(HandlePausingFlows)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert run.empirical_policy.pause_keys == {"step-1"}


async def test_pause_without_key_records_random_key():
    bench = Bench()
    run = flow_run()
    bench.place(run, Running(timestamp=T0))

    await bench.propose_flow(run, Paused(timestamp=T0), only(HandlePausingFlows))

    assert len(run.empirical_policy.pause_keys) == 1


async def test_fired_pause_key_is_rejected():
    bench = Bench()
    run = flow_run(empirical_policy=FlowRunPolicy(pause_keys={"step-1"}))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Paused(timestamp=T0, pause_key="step-1"), only(HandlePausingFlows)
    )

    assert result.status is SetStateStatus.REJECT
    assert "already fired" in result.reason


async def test_subflow_cannot_suspend():
    bench = Bench()
    run = flow_run(parent_task_run_id=uuid4(), deployment_id=uuid4())
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Suspended(timestamp=T0, pause_key="k"), only(HandlePausingFlows)
    )

    assert result.status is SetStateStatus.ABORT
    assert "suspend subflows" in result.reason
    assert run.empirical_policy.pause_keys == set()


async def test_suspend_needs_deployment():
    bench = Bench()
    run = flow_run()
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(run, Suspended(timestamp=T0), only(HandlePausingFlows))

    assert result.status is SetStateStatus.ABORT
    assert "deployment" in result.reason


async def test_suspend_with_deployment_is_accepted():
    bench = Bench()
    run = flow_run(deployment_id=uuid4())
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Suspended(timestamp=T0, pause_key="k"), only(HandlePausingFlows)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert run.empirical_policy.pause_keys == {"k"}


# Resuming


async def test_paused_flow_resumes_to_running():
    bench = Bench()
    run = flow_run(run_count=1)
    bench.place(run, Paused(T0 + timedelta(hours=1), timestamp=T0))

    result = await bench.propose_flow(run, Running(timestamp=T0), only(HandleResumingPausedFlows))

    assert result.status is SetStateStatus.ACCEPT
    assert run.run_count == 2
    assert run.empirical_policy.resuming is True


async def test_paused_flow_cannot_become_pending():
    bench = Bench()
    run = flow_run()
    bench.place(run, Paused(timestamp=T0))

    result = await bench.propose_flow(run, Pending(timestamp=T0), only(HandleResumingPausedFlows))

    assert result.status is SetStateStatus.REJECT
    assert run.empirical_policy.resuming is False


async def test_suspended_flow_without_deployment_stays():
    bench = Bench()
    run = flow_run()
    bench.place(run, Suspended(timestamp=T0))

    result = await bench.propose_flow(
        run, Scheduled(T0, timestamp=T0), only(HandleResumingPausedFlows)
    )

    assert result.status is SetStateStatus.REJECT
    assert run.empirical_policy.resuming is False


async def test_expired_pause_fails_the_flow():
    bench = Bench()
    run = flow_run()
    bench.place(run, Paused(T0 - timedelta(seconds=1), timestamp=T0))

    result = await bench.propose_flow(run, Running(timestamp=T0), only(HandleResumingPausedFlows))

    assert result.status is SetStateStatus.REJECT
    assert result.state.type is StateType.FAILED
    assert result.state.message == "The flow was running and never resumed."
    assert run.empirical_policy.resuming is False


async def test_expired_suspend_names_suspend():
    bench = Bench()
    run = flow_run(deployment_id=uuid4())
    bench.place(run, Suspended(T0 - timedelta(seconds=1), timestamp=T0))

    result = await bench.propose_flow(
        run, Resuming(T0, timestamp=T0), only(HandleResumingPausedFlows)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.message == "The flow was resuming and never resumed."
    assert "suspend has timed out" in result.reason


async def test_resumed_suspended_run_is_not_recounted():
    bench = Bench()
    run = flow_run(run_count=1, deployment_id=uuid4())
    bench.place(run, Suspended(T0 + timedelta(hours=1), timestamp=T0))

    resumed = await bench.propose_flow(run, Resuming(T0, timestamp=T0), CoreFlowPolicy)
    pending = await bench.propose_flow(run, Pending(timestamp=T0), CoreFlowPolicy)
    running = await bench.propose_flow(run, Running(timestamp=T0), CoreFlowPolicy)

    assert resumed.status is SetStateStatus.ACCEPT
    assert pending.status is SetStateStatus.ACCEPT
    assert running.status is SetStateStatus.ACCEPT
    assert run.run_count == 1
    assert run.empirical_policy.resuming is False


# Retries


async def test_flow_with_retries_left_retries():
    bench = Bench()
    policy = FlowRunPolicy(retries=2, retry_delay=15, pause_keys={"k"})
    run = flow_run(run_count=1, empirical_policy=policy)
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(
        run, Failed(timestamp=T0, message="boom"), only(RetryFailedFlows)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.name == "AwaitingRetry"
    assert result.state.message == "boom"
    assert result.state.state_details.scheduled_time == T0 + timedelta(seconds=15)
    assert run.empirical_policy.retry_type == "in_process"
    assert run.empirical_policy.pause_keys == set()


async def test_flow_out_of_retries_fails():
    bench = Bench()
    run = flow_run(run_count=3, empirical_policy=FlowRunPolicy(retries=2, retry_type="in_process"))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(run, Failed(timestamp=T0), only(RetryFailedFlows))

    assert result.status is SetStateStatus.ACCEPT
    assert run.empirical_policy.retry_type is None


async def test_flow_without_retries_fails():
    bench = Bench()
    run = flow_run(run_count=1)
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose_flow(run, Failed(timestamp=T0), only(RetryFailedFlows))

    assert result.status is SetStateStatus.ACCEPT


# Events and policies


async def test_core_flow_policy_publishes_event():
    bench = Bench()
    run = flow_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose_flow(run, Running(timestamp=T0), CoreFlowPolicy)

    assert result.status is SetStateStatus.ACCEPT
    [event] = bench.events.events
    assert event["event"] == "flow-run.Running"
    assert event["state_id"] == str(result.state.id)
    assert event["intended"] == {"from": "PENDING", "to": "RUNNING"}


async def test_rejected_flow_event_names_written_state():
    bench = Bench()
    run = flow_run(run_count=1, empirical_policy=FlowRunPolicy(retries=1))
    bench.place(run, Running(timestamp=T0))

    await bench.propose_flow(run, Failed(timestamp=T0), CoreFlowPolicy)

    [event] = bench.events.events
    assert event["state_name"] == "AwaitingRetry"
    assert event["intended"] == {"from": "RUNNING", "to": "FAILED"}


async def test_nullified_flow_transition_publishes_nothing():
    bench = Bench()
    run = flow_run()
    bench.place(run, Cancelling(timestamp=T0))

    result = await bench.propose_flow(run, Running(timestamp=T0), CoreFlowPolicy)

    assert result.status is SetStateStatus.REJECT
    assert bench.events.events == []


async def test_flow_pending_claim_by_second_worker_aborts():
    bench = Bench()
    run = flow_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose_flow(run, Pending(timestamp=T0), CoreFlowPolicy)

    assert result.status is SetStateStatus.ABORT


async def test_forced_flow_keeps_persisted_result():
    bench = Bench()
    run = flow_run()
    bench.place(run, Completed(timestamp=T0, data=PERSISTED))

    lose = await bench.propose_flow(run, Completed(timestamp=T0), force=True)
    crash = await bench.propose_flow(run, Crashed(timestamp=T0), force=True)

    assert lose.status is SetStateStatus.REJECT
    assert crash.status is SetStateStatus.ACCEPT


async def test_forced_flow_from_completed_to_unpersisted_completed():
    bench = Bench()
    run = flow_run()
    bench.place(run, Completed(timestamp=T0))

    result = await bench.propose_flow(run, Completed(timestamp=T0), MinimalFlowPolicy)

    assert result.status is SetStateStatus.ACCEPT
