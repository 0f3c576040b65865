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
    steps = _compile(context, policy)
    entered: list[Step] = []
    for step in steps:
        if context.orchestration_error is not None:
            break
        entered.append(step)
        await _enter(step, context)

    if context.orchestration_error is None:
        await _validate(context)
    else:
        context.validated_state = context.initial_state

    for step in reversed(entered):
        await _exit(step, context)

    return context.result()


def _compile(context: OrchestrationContext, policy: OrchestrationPolicy) -> list[Step]:
    from_type, to_type = context.transition()
    steps: list[Step] = []
    for rule_class in policy.rules:
        if issubclass(rule_class, BaseUniversalTransform):
            steps.append(rule_class(context))
        elif rule_class.applies_to(from_type, to_type):
            steps.append(rule_class(context, from_type, to_type))

    is_task = isinstance(context, TaskOrchestrationContext)
    transforms = GLOBAL_TASK_TRANSFORMS if is_task else GLOBAL_FLOW_TRANSFORMS
    steps.extend(transform_class(context) for transform_class in transforms)
    return steps


async def _enter(step: Step, context: OrchestrationContext) -> None:
    try:
        if isinstance(step, BaseUniversalTransform):
            await step.before_transition(context)
            return

        step.invalid_on_entry = step.is_invalid()
        if step.invalid_on_entry:
            return
        context.rule_signature.append(step.name)
        await step.before_transition(context.initial_state, context.proposed_state, context)
    except StorageFault:
        raise
    except Exception as exc:  # noqa: BLE001 - any rule error becomes an ABORT answer
        _abort_on_error(context, step.name, exc)


async def _exit(step: Step, context: OrchestrationContext) -> None:
    try:
        if isinstance(step, BaseUniversalTransform):
            if context.orchestration_error is None:
                await step.after_transition(context)
            return

        if step.invalid_on_entry:
            return
        if step.decided and not step.has_fizzled():
            return
        if context.orchestration_error is not None or step.has_fizzled():
            await step.cleanup(context.initial_state, context.validated_state, context)
            return
        await step.after_transition(context.initial_state, context.validated_state, context)
        context.finalization_signature.append(step.name)
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
