"""The rule engine's lifecycle, exercised with small rules written for these tests."""

from __future__ import annotations

import pytest

from policy.errors import StorageFault
from policy.policies import OrchestrationPolicy
from policy.result import SetStateStatus
from policy.rule import ALL, BaseOrchestrationRule, BaseUniversalTransform, states
from policy.states import Completed, Failed, Pending, Running, Scheduled, StateType
from tests.policy.harness import T0, Bench, task_run

calls: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls():
    calls.clear()


class Recording(BaseOrchestrationRule):
    """Logs every hook it runs as '<name>.<hook>'."""

    FROM_STATES = ALL
    TO_STATES = ALL

    async def before_transition(self, initial_state, proposed_state, context):
        calls.append(f"{self.name}.before")

    async def after_transition(self, initial_state, validated_state, context):
        calls.append(f"{self.name}.after")

    async def cleanup(self, initial_state, validated_state, context):
        calls.append(f"{self.name}.cleanup")


class First(Recording):
    pass


class Second(Recording):
    pass


class RejectToFailed(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        await self.reject_transition(Failed(timestamp=T0), "rejected for the test")


class RejectToCurrent(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        await self.reject_transition(None, "stay where you are")


class Delay(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        await self.delay_transition(3, "wait for the test")


class Abort(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        await self.abort_transition("aborted for the test")


class Raise(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        raise RuntimeError("boom")


class RaiseAfter(Recording):
    async def after_transition(self, initial_state, validated_state, context):
        await super().after_transition(initial_state, validated_state, context)
        raise RuntimeError("late boom")


class RaiseStorageFault(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        raise StorageFault("connection lost")


class OnlyToCompleted(Recording):
    TO_STATES = states(StateType.COMPLETED)


class Rename(Recording):
    async def before_transition(self, initial_state, proposed_state, context):
        await super().before_transition(initial_state, proposed_state, context)
        await self.rename_state("Renamed")


class RejectLate(Recording):
    async def after_transition(self, initial_state, validated_state, context):
        await self.reject_transition(None, "too late")


class Transform(BaseUniversalTransform):
    async def before_transition(self, context):
        calls.append("Transform.before")

    async def after_transition(self, context):
        calls.append("Transform.after")


def policy_of(*rules) -> OrchestrationPolicy:
    return OrchestrationPolicy("TestPolicy", tuple(rules))


async def test_accept_runs_hooks_in_order():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), policy_of(First, Second, Transform))

    assert result.status is SetStateStatus.ACCEPT
    assert result.rule is None
    assert calls == [
        "First.before",
        "Second.before",
        "Transform.before",
        "Transform.after",
        "Second.after",
        "First.after",
    ]
    assert bench.last_context.rule_signature == ["First", "Second"]
    assert bench.last_context.finalization_signature == ["Second", "First"]


async def test_accept_records_state_on_run():
    bench = Bench()
    run = task_run()
    proposed = Running(timestamp=T0)

    result = await bench.propose(run, proposed, policy_of(First))

    assert result.state.id == proposed.id
    assert run.state.id == proposed.id
    assert run.state_id == proposed.id
    assert run.state_type is StateType.RUNNING
    assert bench.written(run) == [proposed]


async def test_earlier_rule_change_fizzles_with_cleanup():
    bench = Bench()
    run = task_run()
    bench.place(run, Running(timestamp=T0))

    result = await bench.propose(
        run, Completed(timestamp=T0), policy_of(First, RejectToFailed, Second)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.type is StateType.FAILED
    assert result.rule == "RejectToFailed"
    # Second entered after the change, so it is invalid and runs nothing. First
    # entered before it, so its transition fizzled and it cleans up. The deciding rule
    # runs neither hook on exit.
    assert calls == ["First.before", "RejectToFailed.before", "First.cleanup"]


async def test_later_rule_change_fizzles_earlier_rules():
    bench = Bench()
    run = task_run()
    bench.place(run, Running(timestamp=T0))

    await bench.propose(run, Completed(timestamp=T0), policy_of(First, Second, Abort))

    assert calls == [
        "First.before",
        "Second.before",
        "Abort.before",
        "Second.cleanup",
        "First.cleanup",
    ]


async def test_rule_outside_its_transitions_is_not_compiled():
    bench = Bench()
    run = task_run()
    bench.place(run, Pending(timestamp=T0))

    await bench.propose(run, Running(timestamp=T0), policy_of(OnlyToCompleted, First))

    assert calls == ["First.before", "First.after"]


async def test_reject_to_current_writes_nothing():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), policy_of(RejectToCurrent, Transform))

    assert result.status is SetStateStatus.REJECT
    assert result.state.id == current.id
    assert result.reason == "stay where you are"
    assert bench.written(run) == [current]
    assert run.state_type is StateType.PENDING
    assert run.run_count == 0


async def test_reject_to_current_without_state_aborts():
    bench = Bench()
    run = task_run()

    result = await bench.propose(run, Running(timestamp=T0), policy_of(RejectToCurrent))

    assert result.status is SetStateStatus.ABORT
    assert result.rule == "RejectToCurrent"
    assert "no state" in result.reason
    assert bench.written(run) == []


async def test_wait_writes_nothing():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), policy_of(Delay))

    assert result.status is SetStateStatus.WAIT
    assert result.delay_seconds == 3
    assert result.state.id == current.id
    assert result.rule == "Delay"
    assert bench.written(run) == [current]
    assert run.run_count == 0
    assert run.start_time is None


async def test_abort_writes_nothing():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(run, Running(timestamp=T0), policy_of(Abort))

    assert result.status is SetStateStatus.ABORT
    assert result.delay_seconds is None
    assert result.state.id == current.id
    assert bench.written(run) == [current]


async def test_deciding_rule_skips_after_hook():
    bench = Bench()
    run = task_run()
    bench.place(run, Running(timestamp=T0))

    await bench.propose(run, Completed(timestamp=T0), policy_of(RejectToFailed))

    assert calls == ["RejectToFailed.before"]


async def test_rename_keeps_rules_valid():
    bench = Bench()
    run = task_run()

    result = await bench.propose(run, Running(timestamp=T0), policy_of(Rename, First))

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.name == "Renamed"
    assert run.state_name == "Renamed"
    assert calls == ["Rename.before", "First.before", "First.after", "Rename.after"]


async def test_raising_rule_aborts_with_reason():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(
        run, Running(timestamp=T0), policy_of(First, Raise, Second, Transform)
    )

    assert result.status is SetStateStatus.ABORT
    assert result.rule == "Raise"
    assert "Raise raised RuntimeError: boom" in result.reason
    assert result.state.id == current.id
    assert bench.written(run) == [current]
    assert isinstance(bench.last_context.orchestration_error, RuntimeError)
    assert calls == ["First.before", "Raise.before", "Raise.cleanup", "First.cleanup"]


async def test_raising_after_hook_aborts_and_cleans_up():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))

    result = await bench.propose(
        run, Running(timestamp=T0), policy_of(First, RaiseAfter, Transform)
    )

    assert result.status is SetStateStatus.ABORT
    assert result.rule == "RaiseAfter"
    assert "late boom" in result.reason
    # The state was recorded before the after-hook raised. The caller rolls it back,
    # so the result names the state the run had before.
    assert result.state.id == current.id
    assert calls == [
        "First.before",
        "RaiseAfter.before",
        "Transform.before",
        "Transform.after",
        "RaiseAfter.after",
        "First.cleanup",
    ]


async def test_storage_fault_in_rule_propagates():
    bench = Bench()
    run = task_run()

    with pytest.raises(StorageFault):
        await bench.propose(run, Running(timestamp=T0), policy_of(RaiseStorageFault))


class FailingRecorder:
    def __init__(self, error: Exception):
        self.error = error

    async def record(self, run, state):
        raise self.error


async def test_validation_error_aborts_without_state():
    bench = Bench()
    run = task_run()
    current = bench.place(run, Pending(timestamp=T0))
    bench.recorder = FailingRecorder(ValueError("bad row"))

    result = await bench.propose(run, Running(timestamp=T0), policy_of(First))

    assert result.status is SetStateStatus.ABORT
    assert result.state is None
    assert result.rule is None
    assert "validating the proposed state failed" in result.reason
    assert run.state.id == current.id
    assert calls == ["First.before", "First.cleanup"]


async def test_validation_storage_fault_propagates():
    bench = Bench()
    bench.recorder = FailingRecorder(StorageFault("deadlock"))
    run = task_run()

    with pytest.raises(StorageFault):
        await bench.propose(run, Running(timestamp=T0), policy_of(First))


async def test_helper_after_validation_aborts():
    bench = Bench()
    run = task_run()

    result = await bench.propose(run, Running(timestamp=T0), policy_of(RejectLate))

    assert result.status is SetStateStatus.ABORT
    assert "after the proposed state was validated" in result.reason


async def test_missing_proposal_is_rejected():
    bench = Bench()
    run = task_run()
    context = bench.task_context(run, Running(timestamp=T0))
    context.proposed_state = None

    from policy.orchestrate import orchestrate

    with pytest.raises(ValueError, match="needs a proposed state"):
        await orchestrate(context, policy_of(First))


async def test_first_state_matches_none_from_set():
    class FromNothing(Recording):
        FROM_STATES = states(None)
        TO_STATES = states(StateType.SCHEDULED)

    bench = Bench()
    run = task_run()

    await bench.propose(run, Scheduled(T0, timestamp=T0), policy_of(FromNothing))

    assert calls == ["FromNothing.before", "FromNothing.after"]


def test_states_builder_flattens():
    assert states(StateType.RUNNING, {StateType.FAILED}, None) == frozenset(
        {StateType.RUNNING, StateType.FAILED, None}
    )
