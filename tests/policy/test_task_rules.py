"""Task-run rules: terminal states, parent flow runs, parameters, retries, names."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from policy.policies import OrchestrationPolicy
from policy.result import SetStateStatus
from policy.retries import jitter_band
from policy.rules import (
    CopyTaskParametersID,
    HandleTaskTerminalStateTransitions,
    PreventRunningTasksFromStoppedFlows,
    RenameReruns,
    RetryFailedTasks,
    UpdateFlowRunTrackerOnTasks,
)
from policy.runs import FlowRun, TaskRunPolicy
from policy.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    StateType,
)
from tests.policy.harness import T0, Bench, retrying_policy, task_run

PERSISTED = {"type": "result", "serializer": "json", "value": 3}
UNPERSISTED = {"type": "unpersisted"}


def only(*rules) -> OrchestrationPolicy:
    return OrchestrationPolicy("TestPolicy", tuple(rules))


# Terminal states


@pytest.mark.parametrize("proposed", [Cancelling, Paused, Crashed])
async def test_final_run_cannot_look_alive(proposed):
    bench = Bench()
    run = task_run()
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose(
        run, proposed(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ABORT
    assert result.reason == "Run is already FAILED."


@pytest.mark.parametrize("proposed", [Running, Scheduled, Failed, Completed])
async def test_persisted_completed_is_kept(proposed):
    bench = Bench()
    run = task_run()
    current = bench.place(run, Completed(timestamp=T0, data=PERSISTED))

    result = await bench.propose(
        run, proposed(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.id == current.id


async def test_unpersisted_completed_can_rerun():
    bench = Bench()
    run = task_run(run_count=2)
    bench.place(run, Completed(timestamp=T0, data=UNPERSISTED))

    result = await bench.propose(
        run, Scheduled(T0, timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert run.run_count == 0


async def test_rerun_resets_run_count():
    bench = Bench()
    run = task_run(run_count=3)
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose(
        run, Running(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    # Reset to 0 by the rule, then counted once by the run-count transform.
    assert run.run_count == 1


async def test_final_to_final_keeps_run_count():
    bench = Bench()
    run = task_run(run_count=3)
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose(
        run, Cancelled(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert run.run_count == 3


async def test_fizzled_rerun_restores_run_count():
    bench = Bench()
    run = task_run(run_count=3)
    bench.place(run, Failed(timestamp=T0, scheduled_time=T0 + timedelta(minutes=1)))

    class AbortAll(HandleTaskTerminalStateTransitions):
        async def before_transition(self, initial_state, proposed_state, context):
            await self.abort_transition("stop")

    result = await bench.propose(
        run, Running(timestamp=T0), only(HandleTaskTerminalStateTransitions, AbortAll)
    )

    assert result.status is SetStateStatus.ABORT
    assert run.run_count == 3


async def test_flow_retry_renames_running():
    bench = Bench()
    flow_run = FlowRun(id=uuid4(), run_count=2, state=Running(timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id, flow_run_run_count=1)
    bench.place(run, Completed(timestamp=T0, data=UNPERSISTED))

    result = await bench.propose(
        run, Running(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.name == "Retrying"


async def test_same_flow_attempt_keeps_name():
    bench = Bench()
    flow_run = FlowRun(id=uuid4(), run_count=1, state=Running(timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id, flow_run_run_count=1)
    bench.place(run, Failed(timestamp=T0))

    result = await bench.propose(
        run, Running(timestamp=T0), only(HandleTaskTerminalStateTransitions)
    )

    assert result.state.name == "Running"


# Parent flow runs


async def test_run_outside_flow_may_start():
    bench = Bench()
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0), only(PreventRunningTasksFromStoppedFlows)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_flow_without_state_aborts_task():
    bench = Bench()
    flow_run = FlowRun(id=uuid4())
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id)

    result = await bench.propose(
        run, Running(timestamp=T0), only(PreventRunningTasksFromStoppedFlows)
    )

    assert result.status is SetStateStatus.ABORT
    assert "must be Running" in result.reason


@pytest.mark.parametrize("flow_state", [Completed, Pending, Scheduled, Cancelling])
async def test_stopped_flow_aborts_task(flow_state):
    bench = Bench()
    flow_run = FlowRun(id=uuid4(), state=flow_state(timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id)

    result = await bench.propose(
        run, Running(timestamp=T0), only(PreventRunningTasksFromStoppedFlows)
    )

    assert result.status is SetStateStatus.ABORT


async def test_paused_flow_makes_task_not_ready():
    bench = Bench()
    timeout = T0 + timedelta(hours=1)
    flow_run = FlowRun(id=uuid4(), state=Paused(timeout, reschedule=True, timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id)

    result = await bench.propose(
        run, Running(timestamp=T0), only(PreventRunningTasksFromStoppedFlows)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.type is StateType.PAUSED
    assert result.state.name == "NotReady"
    assert result.state.state_details.pause_timeout == timeout
    assert result.state.state_details.pause_reschedule is True


async def test_running_flow_lets_task_start():
    bench = Bench()
    flow_run = FlowRun(id=uuid4(), state=Running(timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id)

    result = await bench.propose(
        run, Running(timestamp=T0), only(PreventRunningTasksFromStoppedFlows)
    )

    assert result.status is SetStateStatus.ACCEPT


# Parameters


async def test_parameters_id_copied_forward():
    bench = Bench()
    run = task_run()
    parameters_id = uuid4()
    bench.place(run, Scheduled(T0, timestamp=T0, task_parameters_id=parameters_id))

    result = await bench.propose(run, Pending(timestamp=T0), only(CopyTaskParametersID))

    assert result.state.state_details.task_parameters_id == parameters_id


async def test_proposed_parameters_id_is_kept():
    bench = Bench()
    run = task_run()
    own = uuid4()
    bench.place(run, Pending(timestamp=T0, task_parameters_id=uuid4()))

    result = await bench.propose(
        run, Running(timestamp=T0, task_parameters_id=own), only(CopyTaskParametersID)
    )

    assert result.state.state_details.task_parameters_id == own


# Retries


async def test_failure_with_retries_left_retries():
    bench = Bench()
    run = task_run(run_count=1, empirical_policy=retrying_policy(2, retry_delay=30))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(
        run, Failed(timestamp=T0, message="boom", data={"type": "error"}), only(RetryFailedTasks)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.rule == "RetryFailedTasks"
    assert result.state.name == "AwaitingRetry"
    assert result.state.type is StateType.SCHEDULED
    assert result.state.state_details.scheduled_time == T0 + timedelta(seconds=30)
    assert result.state.message == "boom"
    assert result.state.data == {"type": "error"}


async def test_retry_delay_list_is_indexed_by_attempt():
    bench = Bench()
    run = task_run(run_count=2, empirical_policy=retrying_policy(5, retry_delay=[1, 10, 100]))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0), only(RetryFailedTasks))

    assert result.state.state_details.scheduled_time == T0 + timedelta(seconds=10)


async def test_retry_delay_list_repeats_last_value():
    bench = Bench()
    run = task_run(run_count=5, empirical_policy=retrying_policy(5, retry_delay=[1, 10]))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0), only(RetryFailedTasks))

    assert result.state.state_details.scheduled_time == T0 + timedelta(seconds=10)


async def test_retry_jitter_stays_in_band():
    bench = Bench()
    policy = TaskRunPolicy(retries=3, retry_delay=100, retry_jitter_factor=0.5)
    run = task_run(run_count=1, empirical_policy=policy)
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0), only(RetryFailedTasks))

    lower, upper = jitter_band(100, 0.5)
    delay = (result.state.state_details.scheduled_time - T0).total_seconds()
    assert lower <= delay <= upper


async def test_unretriable_failure_is_accepted():
    bench = Bench()
    run = task_run(run_count=1, empirical_policy=retrying_policy(3))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0, retriable=False), only(RetryFailedTasks))

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.type is StateType.FAILED


async def test_failure_without_retries_is_accepted():
    bench = Bench()
    run = task_run(run_count=1)
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0), only(RetryFailedTasks))

    assert result.status is SetStateStatus.ACCEPT


async def test_failure_after_last_retry_is_accepted():
    bench = Bench()
    run = task_run(run_count=3, empirical_policy=retrying_policy(2))
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(run, Failed(timestamp=T0), only(RetryFailedTasks))

    assert result.status is SetStateStatus.ACCEPT


# Names of reruns


async def test_first_run_keeps_running_name():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(RenameReruns))

    assert result.state.name == "Running"


async def test_run_from_awaiting_retry_is_retrying():
    bench = Bench()
    run = task_run(run_count=1)
    bench.place(run, AwaitingRetry(T0, timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), only(RenameReruns))

    assert result.state.name == "Retrying"


async def test_claim_of_awaiting_retry_is_retrying():
    bench = Bench()
    run = task_run(run_count=1)
    bench.place(run, Pending(timestamp=T0, claimed_state_name="AwaitingRetry"))

    result = await bench.propose(run, Running(timestamp=T0), only(RenameReruns))

    assert result.state.name == "Retrying"


async def test_other_rerun_is_rerunning():
    bench = Bench()
    run = task_run(run_count=1)
    bench.place(run, Pending(timestamp=T0, claimed_state_name="Scheduled"))

    result = await bench.propose(run, Running(timestamp=T0), only(RenameReruns))

    assert result.state.name == "Rerunning"


async def test_rerun_without_state_is_rerunning():
    bench = Bench()
    run = task_run(run_count=1)

    result = await bench.propose(run, Running(timestamp=T0), only(RenameReruns))

    assert result.state.name == "Rerunning"


# Flow-run attempt tracking


async def test_tracker_records_flow_attempt():
    bench = Bench()
    flow_run = FlowRun(id=uuid4(), run_count=4, state=Running(timestamp=T0))
    bench.flow_runs.add(flow_run)
    run = task_run(flow_run_id=flow_run.id)

    result = await bench.propose(run, Running(timestamp=T0), only(UpdateFlowRunTrackerOnTasks))

    assert result.status is SetStateStatus.ACCEPT
    assert run.flow_run_run_count == 4


async def test_tracker_skips_run_outside_flow():
    bench = Bench()
    run = task_run()

    result = await bench.propose(run, Running(timestamp=T0), only(UpdateFlowRunTrackerOnTasks))

    assert result.status is SetStateStatus.ACCEPT
    assert run.flow_run_run_count == 0


async def test_tracker_aborts_when_flow_run_missing():
    bench = Bench()
    run = task_run(flow_run_id=uuid4())

    result = await bench.propose(run, Running(timestamp=T0), only(UpdateFlowRunTrackerOnTasks))

    assert result.status is SetStateStatus.ABORT
    assert result.rule == "UpdateFlowRunTrackerOnTasks"
    assert "was not found" in result.reason
