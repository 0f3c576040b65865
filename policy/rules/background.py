"""Rules of background task runs: the worker's claim and the enqueue after Scheduled."""

from __future__ import annotations

from uuid import UUID, uuid4

from policy.context import TaskOrchestrationContext
from policy.protocols import EnqueueIntent
from policy.rule import ALL, BaseOrchestrationRule, BaseUniversalTransform
from policy.runs import TaskRun
from policy.states import State, StateType


class EnforceClaim(BaseOrchestrationRule):
    """Let only the worker holding a run's current claim move the run.

    A worker claims a run by proposing Pending from Scheduled and naming, in
    `claimed_state_id`, the Scheduled state its job was enqueued for. The claim is
    aborted unless that state is still the run's current state, so a second claimer or
    a job for a run that has moved on gets ABORT. An accepted claim gets a new claim
    token (on the run and in the Pending state's details) and records the name of the
    claimed state, or the AwaitingRetry origin that state carries. Every other worker
    proposal on a run with a claim token, or carrying one, is aborted unless it carries
    the run's current token. Proposals of the service and of operators are not checked:
    they clear the token themselves.

    A run handed back to its queue from such a claim keeps the AwaitingRetry origin in
    its Scheduled state (a global transform does that), so the next claim still records
    a retry.
    """

    FROM_STATES = ALL
    TO_STATES = ALL

    # The run's claim token before this rule replaced it, set on an accepted claim. A
    # class default rather than an __init__ override, because this rule is created
    # for every transition.
    replaced_token: tuple[UUID | None] | None = None

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if context.actor != "worker":
            return

        is_claim = (
            initial_state is not None
            and initial_state.is_scheduled()
            and proposed_state.is_pending()
        )
        if is_claim:
            await self._check_claim(initial_state, proposed_state, context)
        else:
            await self._check_token(proposed_state, context)

    async def cleanup(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        if self.replaced_token is not None:
            context.run.claim_token = self.replaced_token[0]

    async def _check_claim(
        self, initial_state: State, proposed_state: State, context: TaskOrchestrationContext
    ) -> None:
        details = proposed_state.state_details
        if details.claimed_state_id != initial_state.id:
            await self.abort_transition(
                f"The claim names state {details.claimed_state_id}, but the run's current state "
                f"is {initial_state.id} ({initial_state.name}): another worker claimed the run "
                "or it has moved on."
            )
            return

        token = uuid4()
        self.replaced_token = (context.run.claim_token,)
        context.run.claim_token = token
        details.claim_token = token
        details.claimed_state_name = (
            initial_state.state_details.claimed_state_name or initial_state.name
        )

    async def _check_token(self, proposed_state: State, context: TaskOrchestrationContext) -> None:
        current = context.run.claim_token
        presented = proposed_state.state_details.claim_token
        if current is None and presented is None:
            return
        if presented != current:
            await self.abort_transition(
                "The proposal's claim token is not the run's current claim token: the run was "
                "claimed by another worker or released by the service."
            )


class EnqueueScheduledTasks(BaseUniversalTransform):
    """Ask for a background run to be queued whenever it is written in a Scheduled state.

    This covers the first Scheduled state, the AwaitingRetry state a retry writes and a
    run handed back to its queue, whatever transition was proposed. The rule only
    records an enqueue intent; the caller carries it out after committing the state,
    so no queue entry ever announces a state that was rolled back.
    """

    async def after_transition(self, context: TaskOrchestrationContext) -> None:
        validated = context.validated_state
        if self.nullified_transition() or validated.type is not StateType.SCHEDULED:
            return
        run = context.run
        if not isinstance(run, TaskRun) or not run.is_background:
            return

        context.enqueue_intents.append(
            EnqueueIntent(
                run_id=run.id,
                task_key=run.task_key,
                state_id=validated.id,
                state_name=validated.name,
                scheduled_time=validated.state_details.scheduled_time,
            )
        )
