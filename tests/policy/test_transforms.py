"""Global transforms: run bookkeeping on every transition, forced ones included."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from policy.policies import MinimalFlowPolicy, MinimalTaskPolicy
from policy.runs import FlowRun, FlowRunPolicy
from policy.states import (
    Completed,
    Failed,
    Pending,
    Running,
    Scheduled,
    StateType,
)
from tests.policy.harness import T0, Bench, task_run


async def test_run_fields_follow_state():
    bench = Bench()
    run = task_run()
    proposed = Pending(name="Submitting", timestamp=T0)

    await bench.propose(run, proposed, MinimalTaskPolicy)

    assert run.state_type is StateType.PENDING
    assert run.state_name == "Submitting"
    assert run.state_timestamp == T0


async def test_start_time_set_on_first_running_only():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Running(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Running(timestamp=T0 + timedelta(seconds=5)), MinimalTaskPolicy)

    assert run.start_time == T0


async def test_end_time_set_on_final_state():
    bench = Bench()
    run = task_run()
    later = T0 + timedelta(seconds=3)

    await bench.propose(run, Running(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Completed(timestamp=later), MinimalTaskPolicy)

    assert run.end_time == later


async def test_final_to_final_keeps_first_end_time():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Failed(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Completed(timestamp=T0 + timedelta(seconds=9)), MinimalTaskPolicy)

    assert run.end_time == T0


async def test_leaving_final_state_clears_end_time():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Failed(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Scheduled(T0, timestamp=T0), MinimalTaskPolicy)

    assert run.end_time is None


async def test_final_without_running_sets_start_time():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Failed(timestamp=T0), MinimalTaskPolicy)

    assert run.start_time == T0
    assert run.end_time == T0


async def test_run_time_adds_time_in_running():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Running(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Failed(timestamp=T0 + timedelta(seconds=2)), MinimalTaskPolicy)
    await bench.propose(run, Running(timestamp=T0 + timedelta(seconds=10)), MinimalTaskPolicy)
    await bench.propose(run, Completed(timestamp=T0 + timedelta(seconds=13)), MinimalTaskPolicy)

    assert run.total_run_time == 5


async def test_expected_start_time_from_first_scheduled():
    bench = Bench()
    run = task_run()
    due = T0 + timedelta(minutes=1)

    await bench.propose(run, Scheduled(due, timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Scheduled(due + timedelta(minutes=1), timestamp=T0), MinimalTaskPolicy)

    assert run.expected_start_time == due


async def test_expected_start_time_from_first_timestamp():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Pending(timestamp=T0), MinimalTaskPolicy)

    assert run.expected_start_time == T0


async def test_next_scheduled_start_time_tracks_scheduled():
    bench = Bench()
    run = task_run()
    due = T0 + timedelta(minutes=1)

    await bench.propose(run, Scheduled(due, timestamp=T0), MinimalTaskPolicy)
    scheduled_next = run.next_scheduled_start_time
    await bench.propose(run, Pending(timestamp=T0), MinimalTaskPolicy)

    assert scheduled_next == due
    assert run.next_scheduled_start_time is None


async def test_state_details_name_the_run():
    bench = Bench()
    flow_run_id = uuid4()
    run = task_run(flow_run_id=flow_run_id)

    result = await bench.propose(
        run, Pending(timestamp=T0, task_run_id=uuid4(), flow_run_id=uuid4()), MinimalTaskPolicy
    )

    assert result.state.state_details.task_run_id == run.id
    assert result.state.state_details.flow_run_id == flow_run_id


async def test_task_run_count_counts_running():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Running(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Failed(timestamp=T0), MinimalTaskPolicy)
    await bench.propose(run, Running(timestamp=T0), MinimalTaskPolicy)

    assert run.run_count == 2


async def test_flow_state_details_name_the_flow():
    bench = Bench()
    run = FlowRun(id=uuid4())

    result = await bench.propose_flow(run, Pending(timestamp=T0), MinimalFlowPolicy)

    assert result.state.state_details.flow_run_id == run.id


async def test_subflow_states_point_at_parent_task():
    bench = Bench()
    parent_task_run_id = uuid4()
    run = FlowRun(id=uuid4(), parent_task_run_id=parent_task_run_id)

    result = await bench.propose_flow(run, Running(timestamp=T0), MinimalFlowPolicy)

    assert result.state.state_details.task_run_id == parent_task_run_id
    [mirrored] = bench.subflow_parents.states[parent_task_run_id]
    assert mirrored.type is StateType.RUNNING
    assert mirrored.id != result.state.id
    assert mirrored.state_details.child_flow_run_id == run.id


async def test_subflow_without_updater_is_not_mirrored():
    bench = Bench()
    bench.subflow_parents = None
    run = FlowRun(id=uuid4(), parent_task_run_id=uuid4())

    result = await bench.propose_flow(run, Running(timestamp=T0), MinimalFlowPolicy)

    assert result.state.type is StateType.RUNNING


async def test_top_level_flow_is_not_mirrored():
    bench = Bench()
    run = FlowRun(id=uuid4())

    await bench.propose_flow(run, Running(timestamp=T0), MinimalFlowPolicy)

    assert bench.subflow_parents.states == {}


async def test_flow_run_count_skips_resuming():
    bench = Bench()
    run = FlowRun(id=uuid4(), run_count=1, empirical_policy=FlowRunPolicy(resuming=True))

    await bench.propose_flow(run, Running(timestamp=T0), MinimalFlowPolicy)

    assert run.run_count == 1
    assert run.empirical_policy.resuming is False


async def test_resuming_cleared_by_final_state():
    bench = Bench()
    run = FlowRun(id=uuid4(), empirical_policy=FlowRunPolicy(resuming=True))

    await bench.propose_flow(run, Failed(timestamp=T0), MinimalFlowPolicy)

    assert run.empirical_policy.resuming is False


async def test_resuming_kept_through_pending():
    bench = Bench()
    run = FlowRun(id=uuid4(), empirical_policy=FlowRunPolicy(resuming=True))

    await bench.propose_flow(run, Pending(timestamp=T0), MinimalFlowPolicy)

    assert run.empirical_policy.resuming is True


async def test_flow_run_count_counts_running():
    bench = Bench()
    run = FlowRun(id=uuid4())

    await bench.propose_flow(run, Running(timestamp=T0), MinimalFlowPolicy)

    assert run.run_count == 1


async def test_forced_release_keeps_retry_origin():
    bench = Bench()
    run = task_run(is_background=True)
    bench.place(run, Pending(timestamp=T0, claimed_state_name="AwaitingRetry"))

    result = await bench.propose(run, Scheduled(T0, timestamp=T0), force=True, actor="service")

    assert result.state.state_details.claimed_state_name == "AwaitingRetry"


async def test_release_of_first_attempt_has_no_origin():
    bench = Bench()
    run = task_run(is_background=True)
    bench.place(run, Pending(timestamp=T0, claimed_state_name="Scheduled"))

    result = await bench.propose(run, Scheduled(T0, timestamp=T0), force=True, actor="service")

    assert result.state.state_details.claimed_state_name is None


async def test_proposed_origin_is_kept():
    bench = Bench()
    run = task_run(is_background=True)
    bench.place(run, Pending(timestamp=T0, claimed_state_name="AwaitingRetry"))

    result = await bench.propose(
        run,
        Scheduled(T0, timestamp=T0, claimed_state_name="Late"),
        force=True,
        actor="service",
    )

    assert result.state.state_details.claimed_state_name == "Late"
