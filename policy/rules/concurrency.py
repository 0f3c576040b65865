"""Tag concurrency: slots taken when a task run enters Running and released when it leaves."""

from __future__ import annotations

from uuid import UUID

from policy.context import TaskOrchestrationContext
from policy.rule import ALL, BaseOrchestrationRule, BaseUniversalTransform, states
from policy.states import State, StateType

# A run keeps its slots while Running and while Cancelling, because its code may still
# be executing until the cancellation completes.
SLOT_HOLDING_STATES = frozenset({StateType.RUNNING, StateType.CANCELLING})


class SecureTaskConcurrencySlots(BaseOrchestrationRule):
    """Take one slot on every concurrency limit of the run's tags before it enters Running.

    Every tag is checked for a limit of 0 before any slot is taken: such a run could
    never run, so the transition is aborted even when another limit is also full.
    Otherwise slots are taken tag by tag; the first full limit returns WAIT and the
    slots taken so far are released, so a refused run holds nothing. A run holds at
    most one slot per tag: one it already holds is neither taken twice nor counted
    against it.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.taken_tags: list[str] = []

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if not context.run.tags:
            return  # no tag, so no limit to read
        run_id = context.run.id
        limits = await context.slots.read_limits(context.run.tags)

        for limit in limits:
            if limit.limit == 0:
                await self.abort_transition(
                    f'The concurrency limit on tag "{limit.tag}" is 0, so this run could never '
                    "start; raise the limit or remove the tag."
                )
                return

        for limit in limits:
            if run_id in limit.holders:
                continue
            if len(limit.holders) >= limit.limit:
                await self._release_taken(run_id, context)
                # TODO: jitter this delay so runs refused together do not all return
                # at the same moment.
                await self.delay_transition(
                    context.settings.tag_concurrency_slot_wait_seconds,
                    f'The concurrency limit on tag "{limit.tag}" is full '
                    f"({len(limit.holders)} of {limit.limit} slots held).",
                )
                return
            await context.slots.take_slot(limit.tag, run_id)
            self.taken_tags.append(limit.tag)

    async def cleanup(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        await self._release_taken(context.run.id, context)

    async def _release_taken(self, run_id: UUID, context: TaskOrchestrationContext) -> None:
        if self.taken_tags:
            await context.slots.release_slots(run_id, list(self.taken_tags))
            self.taken_tags.clear()


class ReleaseTaskConcurrencySlots(BaseUniversalTransform):
    """Release every slot of a run written in a state other than Running or Cancelling."""

    async def after_transition(self, context: TaskOrchestrationContext) -> None:
        if self.nullified_transition():
            return
        if context.validated_state.type not in SLOT_HOLDING_STATES:
            await context.slots.release_slots(context.run.id)
