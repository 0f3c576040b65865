"""The rule engine: runs one proposed transition through a policy and the global transforms.

Timeline of one orchestration:

1. every compiled rule of the policy enters in priority order (before-hooks);
2. every global transform enters in order (run bookkeeping);
3. the proposed state is validated: recorded as the run's current state, or nothing
   is written when a rule nullified the proposal (reject to current, WAIT, ABORT);
4. every entered step exits in reverse order (after-hooks, or cleanups of rules whose
   transition a later rule changed).

A hook that raises ends the orchestration with ABORT and a reason naming the hook's
class and the error. The rules still to exit then undo their before-hooks through
`cleanup`. The state may already have been recorded when an after-hook raises, so the
caller must roll back everything the orchestration wrote (its savepoint) whenever
`context.orchestration_error` is set. A `StorageFault` is never turned into ABORT: it
propagates so the caller can roll back the whole batch.
"""

from __future__ import annotations

import logging

from policy.context import OrchestrationContext, TaskOrchestrationContext
from policy.errors import StorageFault
from policy.policies import OrchestrationPolicy
from policy.result import OrchestrationResult, SetStateStatus
from policy.rule import BaseOrchestrationRule, BaseUniversalTransform
from policy.states import StateType
from policy.transforms import GLOBAL_FLOW_TRANSFORMS, GLOBAL_TASK_TRANSFORMS

logger = logging.getLogger("taskgate.policy")

Step = BaseOrchestrationRule | BaseUniversalTransform


async def orchestrate(
    context: OrchestrationContext, policy: OrchestrationPolicy
) -> OrchestrationResult:
    """Decide the proposed transition of `context` under `policy` and return the result.

    The outcome is also left on the context: `validated_state`, `status`, `reason`,
    `delay_seconds`, `decided_by` and, for task runs, `enqueue_intents`.
    """
    if context.proposed_state is None:
        raise ValueError("orchestrate needs a proposed state; context.proposed_state is None")

    context.intended_transition = context.transition()
    to_exit = await _enter_steps(_compile(context, policy), context)

    if context.orchestration_error is None:
        await _validate(context)
    else:
        context.validated_state = context.initial_state

    await _exit_steps(to_exit, context)
    return context.result()


# Step classes by (policy, intended from type, intended to type, is a task run), so
# each policy's rule list is filtered once per transition rather than per proposal.
# Policies are frozen and few, so the cache stays small. It assumes that a rule
# class's FROM_STATES and TO_STATES do not change after its first use. Each class
# comes with what the two loops below need to know of it, worked out once.
_compiled_steps: dict[
    tuple[OrchestrationPolicy, StateType | None, StateType | None, bool],
    tuple[StepClass, ...],
] = {}


class StepClass:
    """A step class of a compiled policy, with the hooks it overrides."""

    __slots__ = ("step_class", "is_transform", "has_before", "has_after", "has_cleanup")

    def __init__(self, step_class: type[Step], is_transform: bool) -> None:
        base = BaseUniversalTransform if is_transform else BaseOrchestrationRule
        self.step_class = step_class
        self.is_transform = is_transform
        # A hook the class does not override is the base class's no-op: skipping it
        # saves a coroutine per step.
        self.has_before = step_class.before_transition is not base.before_transition
        self.has_after = step_class.after_transition is not base.after_transition
        self.has_cleanup = not is_transform and step_class.cleanup is not base.cleanup


def _compile(
    context: OrchestrationContext, policy: OrchestrationPolicy
) -> list[tuple[Step, StepClass]]:
    from_type, to_type = context.intended_transition
    is_task = isinstance(context, TaskOrchestrationContext)
    key = (policy, from_type, to_type, is_task)
    kinds = _compiled_steps.get(key)
    if kinds is None:
        kinds = _select_step_classes(policy, from_type, to_type, is_task)
        _compiled_steps[key] = kinds
    return [
        (
            kind.step_class(context)
            if kind.is_transform
            else kind.step_class(context, from_type, to_type),
            kind,
        )
        for kind in kinds
    ]


def _select_step_classes(
    policy: OrchestrationPolicy,
    from_type: StateType | None,
    to_type: StateType | None,
    is_task: bool,
) -> tuple[StepClass, ...]:
    """Return the policy's steps for a transition, each with the hooks it overrides."""
    selected: list[StepClass] = []
    for rule_class in policy.rules:
        if issubclass(rule_class, BaseUniversalTransform):
            selected.append(StepClass(rule_class, True))
        elif rule_class.applies_to(from_type, to_type):
            selected.append(StepClass(rule_class, False))

    transforms = GLOBAL_TASK_TRANSFORMS if is_task else GLOBAL_FLOW_TRANSFORMS
    selected.extend(StepClass(transform_class, True) for transform_class in transforms)
    return tuple(selected)


# The two loops below skip a hook that the step's class does not override. A step with
# nothing to do on exit is not kept for the exit loop. Every compiled rule applies to
# the intended transition. A rule is therefore invalid on entry exactly when the
# current transition differs from the one it was compiled for. Only a hook can change
# the current transition, so it is read again only after a hook ran.


async def _enter_steps(
    steps: list[tuple[Step, StepClass]], context: OrchestrationContext
) -> list[tuple[Step, StepClass]]:
    """Run the before-hooks in order until one raises, and return the steps to exit."""
    to_exit: list[tuple[Step, StepClass]] = []
    transition = context.transition()
    for planned in steps:
        if context.orchestration_error is not None:
            break
        step, kind = planned
        try:
            if kind.is_transform:
                if kind.has_after:
                    to_exit.append(planned)
                if kind.has_before:
                    await step.before_transition(context)
                    transition = context.transition()
                continue

            step.invalid_on_entry = transition != (step.from_type, step.to_type)
            if step.invalid_on_entry:
                continue
            to_exit.append(planned)
            context.rule_signature.append(kind.step_class.__name__)
            if kind.has_before:
                await step.before_transition(context.initial_state, context.proposed_state, context)
                transition = context.transition()
        except StorageFault:
            raise
        except Exception as exc:  # noqa: BLE001 - any rule error becomes an ABORT answer
            _abort_on_error(context, step.name, exc)
            transition = context.transition()
    return to_exit


async def _exit_steps(
    to_exit: list[tuple[Step, StepClass]], context: OrchestrationContext
) -> None:
    """Run the after-hooks, or the cleanups of fizzled rules, in reverse order."""
    for step, kind in reversed(to_exit):
        try:
            if kind.is_transform:
                if context.orchestration_error is None:
                    await step.after_transition(context)
                continue

            fizzled = step.has_fizzled()
            if step.decided and not fizzled:
                continue
            if context.orchestration_error is not None or fizzled:
                if kind.has_cleanup:
                    await step.cleanup(context.initial_state, context.validated_state, context)
                continue
            if kind.has_after:
                await step.after_transition(context.initial_state, context.validated_state, context)
            context.finalization_signature.append(kind.step_class.__name__)
        except StorageFault:
            raise
        except Exception as exc:  # noqa: BLE001 - any rule error becomes an ABORT answer
            _abort_on_error(context, step.name, exc)


async def _validate(context: OrchestrationContext) -> None:
    """Record the proposed state as the run's current state, or write nothing."""
    proposed = context.proposed_state
    if proposed is None:
        context.validated_state = context.initial_state
        return

    run = context.run
    run.state = proposed
    run.state_id = proposed.id
    try:
        await context.recorder.record(run, proposed)
    except StorageFault:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed write becomes an ABORT answer
        run.state = context.initial_state
        run.state_id = context.initial_state.id if context.initial_state else None
        _abort_on_error(context, "validation", exc)
        context.validated_state = None
        context.reason = f"validating the proposed state failed: {type(exc).__name__}: {exc}"
        context.decided_by = None
        return
    context.validated_state = proposed


def _abort_on_error(context: OrchestrationContext, step_name: str, exc: Exception) -> None:
    logger.warning(
        "orchestration of run %s aborted: %s raised %s: %s",
        context.run.id,
        step_name,
        type(exc).__name__,
        exc,
    )
    if context.orchestration_error is None:
        context.orchestration_error = exc
        context.reason = (
            f"orchestration aborted because {step_name} raised {type(exc).__name__}: {exc}"
        )
        context.decided_by = step_name
    context.status = SetStateStatus.ABORT
    context.delay_seconds = None
    context.proposed_state = None
    if context.validated_state is not None:
        # The caller rolls the recorded state back, so return the state the run
        # had before this orchestration.
        context.validated_state = context.initial_state
