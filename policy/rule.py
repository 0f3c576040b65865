"""Base classes of orchestration rules and universal transforms.

An ordinary rule declares the transitions it guards with `FROM_STATES` and `TO_STATES`
(state types, plus None on the FROM side for a run with no state yet). The engine
creates it only for a matching transition and drives its lifecycle:

- on entry, a rule whose transition an earlier rule already changed is invalid and
  runs no hook at all; otherwise `before_transition` runs;
- on exit, a rule whose transition a later rule changed has fizzled and runs
  `cleanup` to undo its before-hook; a rule whose transition is unchanged runs
  `after_transition`;
- a rule that rejected, delayed or aborted the transition itself runs neither hook on
  exit: its own decision replaced the transition, so nothing was accepted for it to
  finish and nothing of another rule's making for it to undo.

A universal transform runs on every transition its policy compiles, with no
invalid or fizzled state: each one checks for a nullified proposal itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from policy.errors import OrchestrationError
from policy.result import SetStateStatus
from policy.states import ALL_STATES, State, StateType

if TYPE_CHECKING:
    from policy.context import OrchestrationContext

StateSet = frozenset[StateType | None]


def states(*members: Iterable[StateType | None] | StateType | None) -> StateSet:
    """Build a FROM or TO set from state types and sets of them."""
    collected: set[StateType | None] = set()
    for member in members:
        if member is None or isinstance(member, StateType):
            collected.add(member)
        else:
            collected.update(member)
    return frozenset(collected)


class BaseOrchestrationRule:
    """A rule that guards some transitions and may change their outcome."""

    FROM_STATES: ClassVar[StateSet] = frozenset()
    TO_STATES: ClassVar[StateSet] = frozenset()

    def __init__(
        self,
        context: OrchestrationContext,
        from_type: StateType | None,
        to_type: StateType | None,
    ) -> None:
        self.context = context
        self.from_type = from_type
        self.to_type = to_type
        self.invalid_on_entry: bool | None = None
        self.decided = False  # set when this rule itself rejected, delayed or aborted

    @classmethod
    def applies_to(cls, from_type: StateType | None, to_type: StateType | None) -> bool:
        """Tell whether this rule guards the transition `from_type` to `to_type`."""
        return from_type in cls.FROM_STATES and to_type in cls.TO_STATES

    @property
    def name(self) -> str:
        return type(self).__name__

    def is_invalid(self) -> bool:
        """Tell whether the transition this rule was created for has changed or never applied."""
        if not self.applies_to(self.from_type, self.to_type):
            return True
        return self.context.transition() != (self.from_type, self.to_type)

    def has_fizzled(self) -> bool:
        return self.context.transition() != (self.from_type, self.to_type)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        """Inspect the proposal before it is validated; may change it through the helpers."""

    async def after_transition(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        """Act on a transition that was validated as this rule saw it."""

    async def cleanup(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: OrchestrationContext,
    ) -> None:
        """Undo the effects of `before_transition` after a later rule changed the transition."""

    # Helpers that change the proposal. Each one records this rule as the decider, and
    # the last call wins when several rules change the outcome.

    def _check_not_validated(self, helper: str) -> None:
        if self.context.validated_state is not None:
            raise OrchestrationError(
                f"{self.name} called {helper} after the proposed state was validated; "
                "change a proposal only from before_transition"
            )

    def _decide(self, status: SetStateStatus, reason: str, proposed_state: State | None) -> None:
        self.context.proposed_state = proposed_state
        self.context.status = status
        self.context.reason = reason
        self.context.delay_seconds = None
        self.context.decided_by = self.name
        self.to_type = proposed_state.type if proposed_state else None
        self.decided = True

    async def reject_transition(self, state: State | None, reason: str) -> None:
        """Write `state` instead of the proposal, or keep the current state when None."""
        self._check_not_validated("reject_transition")
        if state is None and self.context.initial_state is None:
            raise OrchestrationError(
                f"{self.name} rejected the first state of a run to its current state, "
                "but the run has no state; reject to a state instead"
            )
        proposed = self.context.proposed_state
        if state is not None and proposed is not None and state.state_details.transition_id is None:
            # The replacement is the outcome of the same request, so a resend with that
            # transition id must find it as the run's current state.
            state.state_details.transition_id = proposed.state_details.transition_id
        self._decide(SetStateStatus.REJECT, reason, state)

    async def delay_transition(self, delay_seconds: float, reason: str) -> None:
        """Write nothing and tell the proposer to propose again after `delay_seconds`."""
        self._check_not_validated("delay_transition")
        self._decide(SetStateStatus.WAIT, reason, None)
        self.context.delay_seconds = float(delay_seconds)

    async def abort_transition(self, reason: str) -> None:
        """Write nothing and tell the proposer to stop orchestrating this run."""
        self._check_not_validated("abort_transition")
        self._decide(SetStateStatus.ABORT, reason, None)

    async def rename_state(self, state_name: str) -> None:
        """Rename the proposed state, keeping its type so no other rule fizzles."""
        self._check_not_validated("rename_state")
        if self.context.proposed_state is not None:
            self.context.proposed_state.name = state_name


class BaseUniversalTransform:
    """Bookkeeping that runs on every transition of its policy, forced ones included."""

    def __init__(self, context: OrchestrationContext) -> None:
        self.context = context

    @classmethod
    def applies_to(cls, from_type: StateType | None, to_type: StateType | None) -> bool:
        return True

    @property
    def name(self) -> str:
        return type(self).__name__

    def nullified_transition(self) -> bool:
        """Tell whether a rule left nothing to write (reject to current, WAIT or ABORT)."""
        return self.context.proposed_state is None

    async def before_transition(self, context: OrchestrationContext) -> None:
        """Act before validation; runs even when the proposal was nullified."""

    async def after_transition(self, context: OrchestrationContext) -> None:
        """Act after validation; skipped when a hook raised."""


ALL = ALL_STATES
